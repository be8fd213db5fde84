"""Record what real clients ask the instance metadata service (the source of IMDS-CLIENTS.md).

    python3 tests/clients/imds_research.py CLIENT [--require-token] [--no-echo-ttl]
                                                  [--fault PATH=STATUS ...] [--listing TEXT] [--down refuse|drop]
                                                  [--timeout SECONDS] [--brief]

Runs CLIENT (awscli, boto3, s3cmd, fog, rclone, registry) unmodified in a pod with no keys, its
S3 endpoint a FakeS3 (403 to everything) exposed on the bridge, its 169.254.169.254:80 routed
to an IMDSStub (or, with --down, to a closed port or nowhere), then prints every IMDS request with its time
since the first, and each S3 request with the access key it was signed with. Needs root and
the packages listed in IMDS-CLIENTS.md.
"""

import argparse
import re
import socket
import subprocess
import sys
import textwrap
import time

from imds_stub import ROLE, FakeS3, IMDSStub
from pods import Network, unavailable

BUCKET = "bucket"
TIMEOUT = 120  # seconds a client may take (--timeout)

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: debug
storage:
  s3:
    region: us-east-1
    regionendpoint: http://{endpoint}
    bucket: {bucket}
    secure: false
http:
  addr: 127.0.0.1:5000
"""


def awscli(pod, endpoint):
    return pod.run(["aws", "s3", "ls", f"s3://{BUCKET}", "--endpoint-url", f"http://{endpoint}"],
                   timeout=TIMEOUT)


def boto3(pod, endpoint):
    script = ("import boto3\n"
              f"s3 = boto3.client('s3', endpoint_url='http://{endpoint}', region_name='us-east-1')\n"
              f"print(s3.list_objects_v2(Bucket='{BUCKET}'))\n")
    return pod.run([sys.executable, "-c", script], timeout=TIMEOUT)


def s3cmd(pod, endpoint):
    with open(f"{pod.home}/s3cfg", "w") as cfg:
        cfg.write(f"[default]\nhost_base = {endpoint}\nhost_bucket = {endpoint}\n"
                  "use_https = False\nbucket_location = us-east-1\n")
    return pod.run(["s3cmd", "-c", f"{pod.home}/s3cfg", "ls", f"s3://{BUCKET}"], timeout=TIMEOUT)


def fog(pod, endpoint):
    script = textwrap.dedent(f"""\
        require 'fog/aws'
        s3 = Fog::Storage.new(provider: 'AWS', use_iam_profile: true, region: 'us-east-1',
                              endpoint: 'http://{endpoint}', path_style: true)
        p s3.directories.get('{BUCKET}')
        """)
    return pod.run(["ruby", "-e", script], timeout=TIMEOUT)


def rclone(pod, endpoint):
    with open(f"{pod.home}/rclone.conf", "w") as cfg:
        cfg.write(f"[s3]\ntype = s3\nprovider = Other\nenv_auth = true\nregion = us-east-1\n"
                  f"endpoint = http://{endpoint}\n")
    return pod.run(["rclone", "--config", f"{pod.home}/rclone.conf", "--low-level-retries", "1",
                    "--retries", "1", "ls", f"s3:{BUCKET}"], timeout=TIMEOUT)


def registry(pod, endpoint):
    """docker-registry with the s3 driver in the pod; starting a blob upload makes it write to
    S3 (`_uploads/<id>/startedat`), the first time it needs credentials."""
    with open(f"{pod.home}/config.yml", "w") as cfg:
        cfg.write(REGISTRY_CONFIG.format(endpoint=endpoint, bucket=BUCKET))
    with open(f"{pod.home}/registry.log", "w") as log:
        server = pod.popen(["docker-registry", "serve", f"{pod.home}/config.yml"],
                           stdout=log, stderr=log)
        base = "http://127.0.0.1:5000/v2"
        for _ in range(50):
            if pod.run(["curl", "-sf", "-o", "/dev/null", f"{base}/"]).returncode == 0:
                break
            time.sleep(0.2)
        upload = pod.run(["curl", "-s", "-D", "-", "-X", "POST", f"{base}/probe/blobs/uploads/"],
                         timeout=TIMEOUT)
        server.terminate()
        server.wait()
    with open(f"{pod.home}/registry.log") as log:
        errors = [line for line in log if "level=error" in line]
    upload.stderr = "".join(errors)
    return upload


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLIENTS = {f.__name__: f for f in (awscli, boto3, s3cmd, fog, rclone, registry)}


def show(requests, start, brief):
    for r in requests:
        print(f"  +{(r['time'] - start) * 1000:7.0f}ms {r['client']}:{r['port']} "
              f"{r['method']} {r['path']} -> {r['status']}")
        for name, value in [] if brief else r["headers"]:
            if name.lower() == "x-aws-ec2-metadata-token":
                value = value[:8] + "..."  # tokens are random
            print(f"      {name}: {value}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("--require-token", action="store_true")
    parser.add_argument("--no-echo-ttl", action="store_true")
    parser.add_argument("--fault", action="append", default=[], metavar="PATH=STATUS")
    parser.add_argument("--listing", default=ROLE, help="body of iam/security-credentials/")
    parser.add_argument("--down", choices=("refuse", "drop"),
                        help="no IMDS: route to a closed port (refused) or route nowhere (dropped)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds the client may take")
    parser.add_argument("--brief", action="store_true", help="no headers, short client output")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        sys.exit(reason)
    global TIMEOUT
    TIMEOUT = args.timeout
    faults = {path: int(status) for path, status in (f.rsplit("=", 1) for f in args.fault)}
    imds = IMDSStub(require_token=args.require_token, echo_ttl=not args.no_echo_ttl, faults=faults,
                    listing=args.listing.encode().decode("unicode_escape"))
    s3 = FakeS3()
    net = Network()
    try:
        if args.down == "refuse":
            net.route_imds(closed_port())
        elif args.down is None:
            net.route_imds(imds.port)
        endpoint = net.expose(s3.port)
        pod = net.pod(args.client)
        start = time.monotonic()
        try:
            done = CLIENTS[args.client](pod, endpoint)
            print(f"{args.client}: exit {done.returncode} after {time.monotonic() - start:.1f}s")
            output = (done.stdout + done.stderr).strip()
        except subprocess.TimeoutExpired:
            print(f"{args.client}: still running after {args.timeout:.0f}s, killed")
            output = ""
        print(textwrap.indent(output[-300:] if args.brief else output[-1500:], "  | "))
        print("IMDS requests:")
        show(imds.requests, start, args.brief)
        print("S3 requests:")
        for r in s3.requests:
            headers = {k.lower(): v for k, v in r["headers"]}
            key = re.search(r"Credential=([^/]+)|AWS ([^:]+):", headers.get("authorization", ""))
            print(f"  {r['method']} {r['path']} key={key and (key.group(1) or key.group(2))} "
                  f"session-token={'x-amz-security-token' in headers}")
    finally:
        net.close()
        imds.close()
        s3.close()


if __name__ == "__main__":
    main()
