"""The RunPod provider: `provider` (the protocol on RunPod), `config` (PodRoute config -> endpoint
record), `records` (normalized API records), `rest` (REST v2, primary), `graphql` (fallback),
`http` (auth, retries, error mapping)."""
