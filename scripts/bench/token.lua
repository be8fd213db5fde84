-- wrk: PUT /latest/api/token (an IMDSv2 session token, 6 hours), as the SDKs ask for one.
wrk.method = "PUT"
wrk.headers["X-aws-ec2-metadata-token-ttl-seconds"] = "21600"
