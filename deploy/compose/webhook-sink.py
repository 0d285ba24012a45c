"""Alert webhook receiver of the compose deployment: logs each notification
(path = receiver, then status and alert names) and answers 200. Standard
library only, so it runs on the official python image."""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            msg = json.loads(body)
            alerts = [a.get("labels", {}).get("alertname", "?") for a in msg.get("alerts", [])]
            line = {"receiver": self.path.strip("/"), "status": msg.get("status"),
                    "group": msg.get("groupLabels"), "alerts": alerts}
        except ValueError:
            line = {"receiver": self.path.strip("/"), "unparsed": body.decode("utf-8", "replace")}
        print(json.dumps(line), flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    HTTPServer(("0.0.0.0", port), Handler).serve_forever()
