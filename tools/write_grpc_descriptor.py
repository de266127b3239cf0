"""Write `server/grpc/descriptor.py` from `server/grpc/open_inference.proto` (`make proto`).

The server loads the protocol's messages from this serialized descriptor into a descriptor pool
of its own, instead of importing protoc's generated modules, which register their messages in
protobuf's one default pool: there, `inference.ModelInferRequest` would clash with tritonclient's
own copy of the protocol in any process that loads both (a test run, a client beside a server).
`tests/server/test_grpc_descriptor.py` fails when the committed file is not what this writes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "server" / "grpc"
PROTO = "open_inference.proto"
TARGET = PROTO_DIR / "descriptor.py"

HEADER = '''"""The Open Inference Protocol's messages and service, as a serialized FileDescriptorProto of
`open_inference.proto`. Written by `tools/write_grpc_descriptor.py` (`make proto`); do not edit."""

SERIALIZED_FILE = (
'''


def render() -> str:
    """The module's text, from the .proto compiled by grpcio-tools' bundled protoc."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "set.bin"
        arguments = ["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}", str(PROTO_DIR / PROTO)]
        status = protoc.main(arguments)
        if status != 0:
            raise SystemExit(f"protoc failed with status {status}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    (only,) = files
    data = only.SerializeToString(deterministic=True)
    lines = [f"    {data[i : i + 60]!r}\n" for i in range(0, len(data), 60)]
    return HEADER + "".join(lines) + ")\n"


def main() -> int:
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
