//! Micro numbers for `verify` with the key set already in memory (a cache hit): an RS256 token
//! (2048-bit key) and an ES256 one, as Keyless's issuer mints them; and `mint` itself.
//!
//! `cargo bench -p keyless-oidc --bench verify -- --quick`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyless_oidc::{
    Expectations, Issuer, IssuerKeys, KeySet, ServiceAccountClaims, SigningKey, verify,
};

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://keyless.example/oidc";

fn issuer(key: SigningKey) -> Issuer {
    Issuer::new(URL, IssuerKeys::new(key, NOW)).expect("issuer")
}

fn claims() -> ServiceAccountClaims {
    ServiceAccountClaims {
        namespace: "gitlab".into(),
        service_account: "registry".into(),
        audiences: vec!["sts.amazonaws.com".into()],
        duration_seconds: 3600,
        service_account_uid: Some("0d7d6a4a-1f2e-4b5c-9a8b-7c6d5e4f3a2b".into()),
        pod: None,
    }
}

fn bench(c: &mut Criterion) {
    let rsa = issuer(
        SigningKey::from_pkcs8(include_bytes!("../testdata/rsa2048.pk8.pem")).expect("rsa key"),
    );
    let ec = issuer(SigningKey::generate_es256().expect("ec key"));
    let audiences = vec!["sts.amazonaws.com".to_owned()];
    let expect = Expectations::new(URL, &audiences);

    for (name, issuer) in [("RS256-2048", &rsa), ("ES256", &ec)] {
        let token = issuer.mint(&claims(), NOW).expect("mint");
        // Through the published document, as a remote issuer's keys would arrive.
        let keys = KeySet::from_jwks_json(issuer.jwks_json().as_bytes()).expect("jwks");
        verify(&token, &keys, &expect, NOW).expect("the token verifies");
        c.bench_function(&format!("verify {name}"), |b| {
            b.iter(|| verify(black_box(&token), &keys, &expect, NOW))
        });
        c.bench_function(&format!("mint {name}"), |b| {
            b.iter(|| issuer.mint(&claims(), NOW))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
