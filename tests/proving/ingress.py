"""The Ingress controller, played by the proving ground.

The rendered Ingresses route each public host (`auth.<domain>`, `matrix.<domain>`...) over TLS
to a Service. A program of the workplace that calls another through its public name — Synapse
loads its OIDC issuer's discovery document from `https://auth.<domain>/realms/<realm>` when it
starts (element-hq/synapse@v1.141.0:synapse/app/homeserver.py:425-429, `oidc.load_metadata()`,
which fails the start when it cannot) — reaches this server: every Ingress host resolves in the
pods' hosts files to the bridge's address on the host, where this server listens on 443 with a
certificate for the hosts, signed by a certificate authority made for the run (the programs
that call it are given the authority as the one they trust: `SSL_CERT_FILE`).

A request is forwarded to the address of the pod the rule's Service selects when that pod runs
here (503 while it does not run yet, 502 when it refuses). When the Service's pods do not run here and the host is the OIDC issuer's, the server
answers the discovery document and an empty key set for the realm named in the path, itself:
the issuer is then played, and the output says so. Anything else answers 502.
"""

import http.client
import http.server
import json
import os
import re
import ssl
import subprocess
import threading


def make_ca(directory, hosts):
    """A certificate authority and a server certificate for `hosts`, with openssl(1). Returns
    (ca_cert, server_cert, server_key) paths."""
    ca_key, ca_crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    key, csr, crt = (os.path.join(directory, f"ingress.{x}") for x in ("key", "csr", "crt"))
    ext = os.path.join(directory, "ingress.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + "\n")
        f.write("extendedKeyUsage=serverAuth\n")
    for cmd in (
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", ca_key, "-out", ca_crt, "-days", "1", "-subj", "/CN=hexagone proving ground CA"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", f"/CN={hosts[0]}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
         "-out", crt, "-days", "1", "-extfile", ext],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    os.chmod(ca_crt, 0o644)
    return ca_crt, crt, key


class Ingress:
    """The rendered Ingress rules served on `address`:443. `backend(service, port)` returns the
    (address, port) of a running pod the Service selects, or None."""

    def __init__(self, ingresses, address, directory, backend):
        self.routes = {}
        for ing in ingresses:
            for rule in ing["spec"].get("rules") or []:
                for p in (rule.get("http") or {}).get("paths") or []:
                    svc = p["backend"]["service"]
                    self.routes[rule["host"]] = (svc["name"], svc["port"].get("number") or svc["port"].get("name"))
        self.hosts = sorted(self.routes)
        self.backend = backend
        self.played = set()  # hosts whose issuer the server answered itself
        self.ca, crt, key = make_ca(directory, self.hosts)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ingress = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                route = ingress.routes.get(host)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = route and ingress.backend(*route)
                if target == "down":
                    return self.answer(503, b"its pods are not running\n")
                if target:
                    conn = http.client.HTTPConnection(*target, timeout=30)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-For": self.client_address[0]})
                    try:
                        conn.request(self.command, self.path, body=body or None, headers=headers)
                        r = conn.getresponse()
                        data = r.read()
                    except OSError as e:
                        return self.answer(502, f"{e}\n".encode())
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                doc = route and ingress.issuer(host, route[0], self.path)
                if doc:
                    return self.answer(200, json.dumps(doc).encode(), "application/json")
                self.answer(502, b"no backend runs here\n")

            def answer(self, status, data, content_type="text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = handle_one

        self.server = http.server.ThreadingHTTPServer((address, 443), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def issuer(self, host, service, path):
        """Keycloak's realm discovery document and key set (the fields Synapse checks:
        element-hq/synapse@v1.141.0:synapse/handlers/oidc.py:475-545, `_validate_metadata`),
        when the issuer's Service is Keycloak's and Keycloak does not run here."""
        m = re.fullmatch(r"/realms/([\w.-]+)/(\.well-known/openid-configuration|protocol/openid-connect/certs)", path)
        if service != "keycloak" or not m:
            return None
        self.played.add(host)
        if m.group(2).endswith("certs"):
            return {"keys": []}
        base = f"https://{host}/realms/{m.group(1)}"
        oidc = f"{base}/protocol/openid-connect"
        return {
            "issuer": base,
            "authorization_endpoint": f"{oidc}/auth",
            "token_endpoint": f"{oidc}/token",
            "userinfo_endpoint": f"{oidc}/userinfo",
            "jwks_uri": f"{oidc}/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "backchannel_logout_supported": True,
        }

    def close(self):
        self.server.shutdown()
        self.server.server_close()
