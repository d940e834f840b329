"""An OTLP trace receiver for the tests, built from PyPI's `opentelemetry-proto` and `grpcio`: it
takes OTLP/gRPC (`TraceService/Export`) and OTLP/HTTP with protobuf bodies (`POST /v1/traces`), and
keeps every span it is sent with its service's name, and each export's request headers (gRPC
metadata). With `tls` (`pki.write_pki`'s paths) it speaks only TLS and requires a client certificate
of the test CA, as a collector behind mTLS does."""

import ssl
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict = field(default_factory=dict)


class OtlpReceiver:
    def __init__(self, tls=None):
        self.spans, self.headers = [], []
        self._lock = threading.Lock()
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 (the RPC's name)
                receiver._take(request, dict(context.invocation_metadata()))
                return trace_service_pb2.ExportTraceServiceResponse()

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._grpc)
        if tls:
            credentials = grpc.ssl_server_credentials(
                [(tls["server_key"].read_bytes(), tls["server_cert"].read_bytes())],
                root_certificates=tls["ca"].read_bytes(), require_client_auth=True)
            self.grpc_port = self._grpc.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(415)
                    self.end_headers()
                    return
                receiver._take(trace_service_pb2.ExportTraceServiceRequest.FromString(body),
                               {k.lower(): v for k, v in self.headers.items()})
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            # A handshake that fails (an untrusted or missing client certificate) fails in accept,
            # which the server skips.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls["server_cert"], tls["server_key"])
            context.load_verify_locations(tls["ca"])
            context.verify_mode = ssl.CERT_REQUIRED
            self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def _take(self, request, headers):
        with self._lock:
            self.headers.append(headers)
            for resource_spans in request.resource_spans:
                attributes = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        self.spans.append(Span(
                            service=attributes.get("service.name", ""), name=s.name, trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(), parent_id=s.parent_span_id.hex(), kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes}))

    def received(self):
        with self._lock:
            return list(self.spans)

    def stop(self):
        self._grpc.stop(0)
        self._http.shutdown()
