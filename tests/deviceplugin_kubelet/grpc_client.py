"""A gRPC C-core client (Python's grpcio) calling `hal0 device-plugin` on its unix socket.

Usage: grpc_client.py PROTO_ROOT SOCKET [AUTHORITY]

Compiles PROTO_ROOT/v1beta1/deviceplugin.proto with grpcio-tools into a temp dir, dials
`unix:SOCKET` (with grpcio's own default :authority, or AUTHORITY when given), and calls
GetDevicePluginOptions, the first ListAndWatch message and Allocate of the first device.
Prints one JSON object on stdout; a failed call prints {"error": ...} and exits 1.
"""

import json
import sys
import tempfile

import grpc
from grpc_tools import protoc


def main() -> int:
    proto_root, socket = sys.argv[1], sys.argv[2]
    authority = sys.argv[3] if len(sys.argv) > 3 else None
    out = tempfile.mkdtemp(prefix="hal0-grpc-")
    rc = protoc.main(
        [
            "protoc",
            f"-I{proto_root}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "v1beta1/deviceplugin.proto",
        ]
    )
    if rc != 0:
        print(json.dumps({"error": f"protoc failed with {rc}"}))
        return 1
    sys.path.insert(0, out)
    from v1beta1 import deviceplugin_pb2 as pb  # noqa: E402
    from v1beta1 import deviceplugin_pb2_grpc as pb_grpc  # noqa: E402

    options = [("grpc.default_authority", authority)] if authority else []
    channel = grpc.insecure_channel(f"unix:{socket}", options=options)
    stub = pb_grpc.DevicePluginStub(channel)
    try:
        opts = stub.GetDevicePluginOptions(pb.Empty(), timeout=10)
        stream = stub.ListAndWatch(pb.Empty(), timeout=10)
        first = next(stream)
        stream.cancel()
        devices = [[d.ID, d.health] for d in first.devices]
        allocated = []
        if devices:
            request = pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=[devices[0][0]])]
            )
            response = stub.Allocate(request, timeout=10)
            allocated = [
                [d.host_path, d.container_path, d.permissions]
                for d in response.container_responses[0].devices
            ]
    except grpc.RpcError as e:
        print(json.dumps({"error": f"{e.code().name}: {e.details()}"}))
        return 1
    finally:
        channel.close()
    print(
        json.dumps(
            {
                "options": {
                    "pre_start_required": opts.pre_start_required,
                    "get_preferred_allocation_available": opts.get_preferred_allocation_available,
                },
                "devices": devices,
                "allocated": allocated,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
