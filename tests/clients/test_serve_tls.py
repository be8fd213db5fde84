"""`keyless serve --tls-cert --tls-key`: HTTPS for boto3 and awscli, `aws:SecureTransport` in
policies, and certificates reloaded when their files change."""

import datetime
import ipaddress
import os
import ssl
import subprocess
import time
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from test_serve_s3 import Server


def write_cert(cert_path, key_path, common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def tls_server(keyless_bin, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_cert(cert, key, "keyless-first")
    s = Server(keyless_bin, tmp_path / "data", extra=["--tls-cert", str(cert), "--tls-key", str(key)])
    s.verify = str(cert)
    s.cert, s.key = cert, key
    yield s
    s.stop()


def served_common_name(server):
    u = urllib.parse.urlparse(server.endpoint)
    pem = ssl.get_server_certificate((u.hostname, u.port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_https_with_boto3_and_awscli(tls_server):
    assert tls_server.endpoint.startswith("https://127.0.0.1:")
    s3 = tls_server.client()
    s3.create_bucket(Bucket="tls")
    s3.put_object(Bucket="tls", Key="k", Body=b"over tls")
    assert s3.get_object(Bucket="tls", Key="k")["Body"].read() == b"over tls"
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(tls_server.credentials), AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.run(["aws", "--endpoint-url", tls_server.endpoint, "--ca-bundle", str(tls_server.cert), "s3", "ls", "s3://tls"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert " k\n" in proc.stdout


def test_secure_transport_reaches_the_policy_engine(tls_server):
    s3 = tls_server.client()
    s3.create_bucket(Bucket="tlsonly")
    s3.put_object(Bucket="tlsonly", Key="public", Body=b"only over tls")
    s3.put_bucket_policy(Bucket="tlsonly", Policy="""{"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::tlsonly/*",
        "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}""")
    assert tls_server.anonymous().get_object(Bucket="tlsonly", Key="public")["Body"].read() == b"only over tls"


def test_a_rotated_certificate_is_served_without_a_restart(tls_server):
    assert served_common_name(tls_server) == "keyless-first"
    time.sleep(1.1)  # a new modification time, whatever the file system's resolution
    write_cert(tls_server.cert, tls_server.key, "keyless-rotated")
    deadline = time.time() + 10
    while served_common_name(tls_server) != "keyless-rotated":
        assert time.time() < deadline, "the new certificate was not picked up"
        time.sleep(0.5)
    tls_server.verify = str(tls_server.cert)
    assert tls_server.client().list_buckets()["Buckets"] == []


def test_plain_http_to_the_tls_port_is_refused_and_the_server_lives_on(tls_server):
    import http.client
    u = urllib.parse.urlparse(tls_server.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/")
        conn.getresponse().read()
    assert tls_server.client().list_buckets()["Buckets"] == []


def write_ca_and_leaf(ca_path, cert_path, key_path):
    """A private CA and a server certificate it signed for 127.0.0.1: rustls (webpki), unlike
    OpenSSL, refuses a CA certificate served as the server's own."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless-test-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_create_service_account_over_https_with_a_ca_bundle(keyless_bin, tmp_path):
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    write_ca_and_leaf(ca, cert, key)
    server = Server(keyless_bin, tmp_path / "data", extra=["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        create_service_account_over_https(server, keyless_bin, ca)
    finally:
        server.stop()


def create_service_account_over_https(server, keyless_bin, ca):
    def create(name, *extra, **env_extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_EC2_METADATA_DISABLED="true", **env_extra)
        return subprocess.run(
            [keyless_bin, "iam", "create-service-account", "--namespace", "gitlab", "--name", name,
             "--attach-policy-arn", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
             "--endpoint-url", server.endpoint, "--data-dir", str(server.data_dir), *extra],
            capture_output=True, text=True, env=env,
        )
    assert server.endpoint.startswith("https://127.0.0.1:")
    # The server's certificate is from a private CA: without the bundle, the handshake fails.
    untrusted = create("tls")
    assert untrusted.returncode != 0
    assert "ListOpenIDConnectProviders" in untrusted.stderr and "certificate" in untrusted.stderr, untrusted.stderr
    trusted = create("tls", "--ca-bundle", str(ca))
    assert trusted.returncode == 0, trusted.stderr
    assert 'eks.amazonaws.com/role-arn: "arn:aws:iam::000000000000:role/keyless-gitlab-tls"' in trusted.stdout
    # AWS_CA_BUNDLE, as for awscli.
    again = create("tls-env", AWS_CA_BUNDLE=str(ca))
    assert again.returncode == 0, again.stderr
    keys = server.keys()
    iam = __import__("boto3").client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                                     aws_access_key_id=keys["aws_access_key_id"],
                                     aws_secret_access_key=keys["aws_secret_access_key"], verify=str(ca))
    attached = iam.list_attached_role_policies(RoleName="keyless-gitlab-tls-env")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
