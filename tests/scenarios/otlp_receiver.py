"""An OTLP/HTTP logs receiver for the export scenarios.

Decodes each POST /v1/logs body with the OpenTelemetry protocol's own
Python types (PyPI's opentelemetry-proto) and appends every log record it
accepted, as one JSON object per line, to OUT. MODE_FILE says how to answer,
read at each request: "ok" (200), "500" (an error the protocol does not
retry) or "slow" (wait 3 s, then 200). Listens on 127.0.0.1:PORT, prints
the port once it does, then serves until killed.

usage: otlp_receiver.py OUT MODE_FILE PORT
"""

import http.server
import json
import sys
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

OUT, MODE_FILE, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])


def plain(any_value):
    """An AnyValue as a Python value."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [plain(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def attributes(key_values):
    return {kv.key: plain(kv.value) for kv in key_values}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/x-protobuf"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with open(MODE_FILE) as f:
            mode = f.read().strip()
        if mode == "500":
            self.reply(500, b"failing on purpose", "text/plain")
            return
        if mode == "slow":
            time.sleep(3)
        if self.path != "/v1/logs":
            self.reply(404, b"", "text/plain")
            return
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.reply(415, b"", "text/plain")
            return
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        lines = []
        for resource_logs in request.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    lines.append(
                        json.dumps(
                            {
                                "resource": resource,
                                "scope": scope_logs.scope.name,
                                "time_unix_nano": record.time_unix_nano,
                                "severity_number": record.severity_number,
                                "severity_text": record.severity_text,
                                "event_name": record.event_name,
                                "body": plain(record.body),
                                "attributes": attributes(record.attributes),
                            }
                        )
                    )
        with open(OUT, "a") as f:
            for line in lines:
                f.write(line + "\n")
        self.reply(200, ExportLogsServiceResponse().SerializeToString())


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
