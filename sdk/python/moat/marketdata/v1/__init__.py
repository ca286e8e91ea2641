"""Generated gRPC stubs (scripts/generate_stubs.py); do not edit the *_pb2 modules."""
