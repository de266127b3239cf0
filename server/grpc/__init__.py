"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), served beside HTTP
in each worker on GRPC_PORT, with gRPC health checking and reflection.

`messages` loads the protocol's messages into a descriptor pool of the server's own; `codec`
turns them into the protocol-neutral tensors and back; `service` is the endpoints over the same
data plane as `/v2`; `guard` gives every call what the HTTP middleware gives every request
(request ids, credentials, rate limits, admission, metrics); `server` starts and stops it.
"""
