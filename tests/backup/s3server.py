"""Run by the backup tests in `.venv-s3` (moto's own venv: moto needs botocore, which pins python-dateutil<3,
while the migrator's kubernetes client needs >=3): moto's S3 server on 127.0.0.1 and a free port, with
request authentication ON (every request after the set-up must carry a valid SigV4 signature of a key moto
issued), one IAM user allowed s3:*, one bucket. Prints one JSON line (url, bucket, keys) on stdout, then
serves until its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys

SETUP_ACTIONS = 4  # create_user, put_user_policy, create_access_key, create_bucket: the unauthenticated ones
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_ACTIONS)

import boto3  # noqa: E402  (after the setting moto reads at import)
from moto.server import ThreadedMotoServer  # noqa: E402

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    anon = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="migrator")
    iam.put_user_policy(UserName="migrator", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName="migrator")["AccessKey"]
    boto3.client("s3", **anon).create_bucket(Bucket="backups")
    print(json.dumps({"url": url, "bucket": "backups", "access_key_id": key["AccessKeyId"],
                      "secret_access_key": key["SecretAccessKey"]}), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
