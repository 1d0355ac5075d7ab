"""The local cloud: the whole serverless stack on one machine, without Docker or an AWS account."""
