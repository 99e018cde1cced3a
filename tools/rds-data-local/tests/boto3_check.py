"""A second SDK against the emulator: boto3 (botocore's own restJson1 implementation).

Run by tests/boto3.rs with the emulator's URL as argv[1]; exits non-zero on any mismatch.
"""
import sys

import boto3
import botocore.config

ARN = "arn:aws:rds:us-east-1:123456789012:cluster:local"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:local"

client = boto3.client(
    "rds-data",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    aws_access_key_id="AKIDTEST",
    aws_secret_access_key="secret",
    config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
)

common = {"resourceArn": ARN, "secretArn": SECRET}

out = client.execute_statement(
    sql="SELECT :n AS n, :s AS s, :b AS b, :z AS z, CAST(:j AS jsonb) AS j",
    parameters=[
        {"name": "n", "value": {"longValue": -(2**63)}},
        {"name": "s", "value": {"stringValue": "x"}},
        {"name": "b", "value": {"blobValue": b"\x00\xff"}},
        {"name": "z", "value": {"isNull": True}},
        {"name": "j", "value": {"stringValue": '{"k": [1]}'}},
    ],
    includeResultMetadata=True,
    **common,
)
assert out["records"] == [[
    {"longValue": -(2**63)},
    {"stringValue": "x"},
    {"blobValue": b"\x00\xff"},
    {"isNull": True},
    {"stringValue": '{"k": [1]}'},
]], out["records"]
assert [c["typeName"] for c in out["columnMetadata"]] == ["int8", "varchar", "bytea", "text", "jsonb"], out

try:
    client.execute_statement(sql="SELECT * FROM missing_table", **common)
    raise SystemExit("expected DatabaseErrorException")
except client.exceptions.DatabaseErrorException as e:
    assert "42P01" in e.response["Error"]["Message"], e.response

try:
    client.commit_transaction(transactionId="nope", **common)
    raise SystemExit("expected TransactionNotFoundException")
except client.exceptions.TransactionNotFoundException as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404

tx = client.begin_transaction(**common)["transactionId"]
client.execute_statement(sql="CREATE TABLE py (v int)", transactionId=tx, **common)
res = client.batch_execute_statement(
    sql="INSERT INTO py VALUES (:v)",
    parameterSets=[[{"name": "v", "value": {"longValue": i}}] for i in range(3)],
    transactionId=tx,
    **common,
)
assert len(res["updateResults"]) == 3, res
assert client.commit_transaction(transactionId=tx, **common)["transactionStatus"] == "Transaction Committed"
js = client.execute_statement(sql="SELECT v FROM py ORDER BY v", formatRecordsAs="JSON", **common)
assert js["formattedRecords"] == '[{"v":0},{"v":1},{"v":2}]', js
print("boto3 check passed")
