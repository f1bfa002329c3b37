#!/usr/bin/env python3
"""The proving ground: a rendered Workplace's real software, run as processes.

    proving.py RENDERED.yaml [--budget SECONDS] [--mutants] [--keycloak] [--keep]

RENDERED.yaml is the YAML stream `hexagone-operator render -f manifests/samples/workplace.yaml`
prints. For every pod the rendered workloads (StatefulSet, Deployment, Job) describe, whose image
has a local stand-in below (IMAGES), the harness runs the real program as a process:

- the pod's rendered env (value, secretKeyRef, configMapKeyRef, fieldRef, envFrom), with
  $(VAR) expanded in command and args as the kubelet does;
- its volumes under a scratch root: ConfigMap and Secret keys written as files, emptyDir as
  empty directories owned by the pod's fsGroup, claims as empty tmpfs of the size they request
  (a program sizing itself by its disk, SeaweedFS's volume server, sees its claim, not the
  host's free space), every mount path in args, env and the mounted ConfigMap files rewritten
  to its scratch directory;
- under the pod's runAsUser/runAsGroup, no capabilities (empty bounding and inheritable sets)
  and no_new_privs (setpriv);
- in a network namespace of its own on a bridge, where every Service name (short, with the
  namespace, .svc and .svc.cluster.local) resolves to the address of the pod it selects (an
  /etc/netns/<ns>/hosts file, which `ip netns exec` mounts over /etc/hosts).

Init containers run first, in order; a container that exits is restarted; the rendered Ingress
hosts reach the Ingress controller the harness plays (ingress.py). Then it runs each
container's rendered readiness probe as written (tcpSocket, httpGet, exec) until it passes or
the budget ends, runs the rendered Jobs to completion alongside, runs each backup CronJob once
when all is ready (check_backups), and checks the components against each other from client
namespaces of their own. The rendered
NetworkPolicies are enforced as nftables rules in each pod's namespace (Ground.police). It
prints one line per workload: ready / failed (why) / not runnable here (why). Exit 1 when
anything that ran failed.

Secrets: the operator generates the credentials in the cluster and the offline rendering carries
none, so the harness generates each referenced Secret key (32 random characters), as the
operator does. Needs root (namespaces, setpriv), iproute2, util-linux and the packages
tests/scripts/proving-packages.sh installs. Standard library and PyYAML only.
"""

import argparse
import glob
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingress import Ingress  # noqa: E402

# Images with a local stand-in, by repository (the tag is reported next to the local version).
# The value names the adapter that plays the image's entrypoint contract.
IMAGES = {
    "docker.io/library/postgres": "postgres",
    "docker.io/library/mysql": "mariadb",
    "docker.io/valkey/valkey": "valkey",
    "docker.io/matrixdotorg/synapse": "synapse",
    "quay.io/keycloak/keycloak": "keycloak",
    "docker.io/chrislusf/seaweedfs": "seaweedfs",
}

# The images' stop signals other than SIGTERM: the postgres image stops PostgreSQL with SIGINT,
# its fast shutdown (docker-library/postgres 17/bookworm/Dockerfile, `STOPSIGNAL SIGINT`).
STOP_SIGNALS = {"postgres": signal.SIGINT}

# NetworkPolicy (Ground.police): the bridge's address is the node, and plays the ingress
# controller's pods in a namespace of this name, labelled as ops label it (docs/operator.md).
INGRESS_NAMESPACE = "ingress-controller"
INGRESS_CONTROLLER_LABEL = "hexagone.fr/ingress-controller"
# Where the isolation checks' tenant stands: a namespace of its own.
TENANT_NAMESPACE = "tenant"
# An address outside the cluster no egress policy lists (TEST-NET-2, RFC 5737), and a port the
# listed destinations do not list, where the harness stands listeners (outside_destinations).
UNLISTED_ADDRESS = "198.51.100.7"
UNLISTED_PORT = 2525
# A pod of the tenant's namespace listens there: the workplace's egress opens its own namespace.
TENANT_PORT = 8080

# A TCP listener on each address:port of its arguments, speaking enough SMTP (RFC 5321: the
# greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to stand in for the site's mail relay:
# a connection that says nothing is simply closed. With a first argument `log=PATH`, each
# message accepted is appended there as `to=ADDRESS:PORT from=SENDER rcpt=RECIPIENT`. It offers
# no STARTTLS, as a relay without TLS would not.
LISTEN = r"""import socket, sys, threading
log = sys.argv[1][4:] if sys.argv[1:2] and sys.argv[1].startswith("log=") else None
lock = threading.Lock()
def session(c, where):
    c.settimeout(10)
    f = c.makefile("rb")
    say = lambda line: c.sendall(line.encode() + b"\r\n")
    say("220 site-relay ESMTP")
    sender = rcpt = None
    for raw in f:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        verb = line[:4].upper()
        if verb in ("EHLO", "HELO"):
            say("250 site-relay")
        elif line.upper().startswith("MAIL FROM:"):
            sender = line[10:].strip().strip("<>")
            say("250 ok")
        elif line.upper().startswith("RCPT TO:"):
            rcpt = line[8:].strip().strip("<>")
            say("250 ok")
        elif verb == "DATA" and sender and rcpt:
            say("354 end with .")
            ended = False
            for body in f:
                if body in (b".\r\n", b".\n"):
                    ended = True
                    break
            if not ended:
                break
            if log:
                with lock, open(log, "a") as out:
                    out.write(f"to={where} from={sender} rcpt={rcpt}\n")
            say("250 queued")
        elif verb in ("RSET", "NOOP"):
            say("250 ok")
        elif verb == "QUIT":
            say("221 bye")
            break
        else:
            say("503 bad sequence")
    c.close()
def serve(s, where):
    while True:
        c, _ = s.accept()
        threading.Thread(target=session, args=(c, where), daemon=True).start()
for a in sys.argv[1:]:
    if a.startswith("log="):
        continue
    h, p = a.rsplit(":", 1)
    s = socket.create_server((h, int(p)))
    threading.Thread(target=serve, args=(s, a)).start()
"""

# eXo's mail, played by Python's smtplib with eXo's rendered settings (argv: host, port,
# STARTTLS, sender, recipient): STARTTLS when asked for and the relay offers it, as JavaMail's
# mail.smtp.starttls.enable does; exit 0 when the relay queued the message.
SEND_MAIL = r"""import smtplib, sys
host, port, starttls, sender, rcpt = sys.argv[1:6]
with smtplib.SMTP(host, int(port), timeout=5) as s:
    s.ehlo()
    if starttls == "true" and s.has_extn("starttls"):
        s.starttls()
        s.ehlo()
    s.sendmail(sender, [rcpt], f"From: {sender}\r\nTo: {rcpt}\r\nSubject: proving ground\r\n\r\nA notification.\r\n")
print("queued")
"""

# How many isolation probes (check_isolation) run at once.
ISOLATION_PARALLEL = 16

# How long the backup CronJobs' run (check_backups) may take, dumps and uploads together.
BACKUP_SECONDS = 30
# The wait before a failed container of a backup runs again (run_cron).
RESTART_SECONDS = 2
# How long an S3 request answered 500 or 503 is asked again (check_notifications).
S3_RETRY_SECONDS = 20

# Why the other images do not run here (named in the output).
NOT_HERE = {
    "exoplatform/exo": "eXo: no package outside its image",
    "onlyoffice/documentserver": "ONLYOFFICE: no package outside its image",
    "jitsi/": "Jitsi: no package outside its images",
    "elasticsearch": "Elasticsearch: no package outside its image",
    "keycloak/keycloak": "Keycloak: runs with --keycloak (its build and first start take minutes on two cores)",
}


def log(msg):
    print(f"proving: {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    if not found:
        raise RuntimeError(f"no PostgreSQL {name} installed (tests/scripts/proving-packages.sh installs it)")
    return found[-1]


def image_repo(image):
    repo = image.rsplit("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    return repo[: len(repo) - len(last)] + last.split(":", 1)[0]


class Pod:
    """One pod of a rendered workload, with the one container the harness runs."""

    def __init__(self, kind, workload, name, template, index):
        self.kind = kind
        self.workload = workload
        self.name = name
        self.labels = template.get("metadata", {}).get("labels", {}) or {}
        self.spec = template["spec"]
        self.container = self.spec["containers"][0]
        self.index = index
        self.namespace = None  # the Kubernetes namespace; the workplace's when None
        self.ns = None
        self.ip = None
        self.proc = None
        self.root = None
        self.mounts = {}
        self.env = {}
        self.skip_reason = None
        self.restarts = 0
        self.inits = []
        self.respawn = None
        self.claims = {}  # a StatefulSet's claim templates: name -> requested storage

    def init_view(self, container):
        """The same pod with one of its init containers as its container."""
        import copy

        view = copy.copy(self)
        view.container = container
        view.name = f"{self.name}.{container['name']}"
        view.mounts = {}
        view.env = {}
        view.kind = "Init"
        return view

    def ip_for(self, ground):
        """The pod's address on the bridge, given on first use."""
        if self.ip is None:
            self.ip = ground.address()
        return self.ip

    @property
    def image(self):
        return self.container.get("image", "")

    def adapter(self):
        return IMAGES.get(image_repo(self.image))

    def security(self):
        pod = self.spec.get("securityContext", {}) or {}
        ctr = self.container.get("securityContext", {}) or {}
        uid = ctr.get("runAsUser", pod.get("runAsUser"))
        gid = ctr.get("runAsGroup", pod.get("runAsGroup"))
        if uid is None or gid is None:
            raise RuntimeError(f"{self.name}: no runAsUser/runAsGroup rendered; the harness runs no pod as root")
        return int(uid), int(gid), pod.get("fsGroup")


class Ground:
    runs = 0

    def __init__(self, docs, budget, keep, keycloak=False, auditor=None):
        self.docs = docs
        self.keycloak = keycloak
        # The auditor's binary: `hexagone-auditor serve` stands where the rendering sends the
        # filer's notifications (check_notifications); None: not run.
        self.auditor = auditor
        self.auditor_ep = None
        self.auditor_proc = None
        self.budget = budget
        self.keep = keep
        self.namespace = None
        self.configmaps = {}
        self.services = []
        self.ingresses = []
        self.secrets = {}
        self.pods = []
        self.jobs = []
        self.crons = []  # the CronJobs run once here (check_backups)
        self.skipped = []
        self.results = {}
        # Names and addresses of this Ground's own: the mutants' run follows in the same
        # process while the kernel may still be removing the first run's veth pairs.
        Ground.runs += 1
        tag = f"{os.getpid() % 10000}{'abcdefgh'[Ground.runs % 8]}"
        self.tag = tag
        self.bridge = f"hxpg{tag}"
        self.subnet = f"10.231.{(os.getpid() + Ground.runs) % 250}"
        self.scratch = tempfile.mkdtemp(prefix="hexagone-proving.")
        os.chmod(self.scratch, 0o755)
        self.netns = []
        self.addresses = 1  # .1 is the bridge's; see address()
        self.clients = {}  # (namespace, labels) -> the client standing there
        self.policies = []
        self.virtual = []  # check_translation's stand-ins for every rendered workload
        self.listeners = []  # the outside hosts' and the tenant pod's listeners
        self.outside = None
        self.relay_log = None
        self.outside_addresses = []
        self.ingress = None
        self.bound = []  # bind mounts to undo
        self.lock = threading.Lock()
        self.started = time.monotonic()

    # --- reading the rendered objects ---------------------------------------------------

    def read(self):
        for d in self.docs:
            kind, meta = d.get("kind"), d.get("metadata", {})
            self.namespace = self.namespace or meta.get("namespace")
            if kind == "ConfigMap":
                self.configmaps[meta["name"]] = d.get("data", {}) or {}
            elif kind == "Service":
                self.services.append(d)
            elif kind == "Ingress":
                self.ingresses.append(d)
            elif kind == "NetworkPolicy":
                self.policies.append(d)
            elif kind in ("StatefulSet", "Deployment"):
                spec = d["spec"]
                replicas = spec.get("replicas", 1)
                for i in range(replicas):
                    name = f"{meta['name']}-{i}" if kind == "StatefulSet" else f"{meta['name']}-{i}"
                    pod = Pod(kind, meta["name"], name, spec["template"], i)
                    pod.claims = {t["metadata"]["name"]: ((t.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
                                  for t in spec.get("volumeClaimTemplates") or []}
                    if pod.adapter() == "keycloak" and not self.keycloak:
                        pod.skip_reason = NOT_HERE["keycloak/keycloak"]
                    (self.pods if pod.adapter() and not pod.skip_reason else self.skipped).append(pod)
            elif kind == "Job":
                self.jobs.append(Pod(kind, meta["name"], meta["name"], d["spec"]["template"], 0))
            elif kind == "CronJob":
                tpl = d["spec"]["jobTemplate"]["spec"]["template"]
                cron = Pod(kind, meta["name"], meta["name"], tpl, 0)
                # Kubernetes's default when the Job names none (k8s.io/api batch/v1 types.go,
                # JobSpec.BackoffLimit: "Defaults to 6").
                cron.backoff_limit = d["spec"]["jobTemplate"]["spec"].get("backoffLimit", 6)
                # A backup CronJob runs once, as its Job would, when every program it names
                # runs here (its dump's database and SeaweedFS's client): check_backups.
                runnable = all(IMAGES.get(image_repo(c.get("image", ""))) for c in (tpl["spec"].get("initContainers") or []) + tpl["spec"]["containers"])
                (self.crons if runnable else self.skipped).append(cron)

    def secret_keys(self, name):
        # The operator's generated credential Secrets hold one key (platform/src/workplace/
        # render.rs, CREDENTIAL_KEY).
        return ["value"]

    def secret(self, name, key):
        return self.secrets.setdefault((name, key), secrets.token_urlsafe(24)[:32])

    # --- network ------------------------------------------------------------------------

    def address(self):
        with self.lock:
            self.addresses += 1
            if self.addresses > 250:
                raise RuntimeError("more than 249 pods and clients: the bridge's /24 is full")
            return f"{self.subnet}.{self.addresses}"

    def net_up(self):
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        self.hosts = ["127.0.0.1 localhost"]
        for svc in self.services:
            sel = svc["spec"].get("selector") or {}
            ns = svc["metadata"].get("namespace", self.namespace)
            name = svc["metadata"]["name"]
            chosen = [p for p in self.pods if sel and all(p.labels.get(k) == v for k, v in sel.items())]
            if chosen:
                names = [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
                self.hosts.append(f"{chosen[0].ip_for(self)} {' '.join(names)}")
                if svc["spec"].get("clusterIP") == "None":
                    for p in chosen:
                        self.hosts.append(f"{p.ip_for(self)} {p.name}.{name} {p.name}.{name}.{ns}.svc.cluster.local")
        # Every Ingress host resolves to the bridge's address, where the harness plays the
        # Ingress controller (tests/proving/ingress.py).
        public = sorted({r["host"] for i in self.ingresses for r in i["spec"].get("rules") or [] if r.get("host")})
        if public:
            self.hosts.append(f"{self.subnet}.1 {' '.join(public)}")
        self.auditor_up()
        self.outside_up()
        for pod in self.pods + self.jobs + self.crons:
            self.attach(pod)
        if self.auditor_ep is not None:
            self.attach(self.auditor_ep)
            self.auditor_start()
        self.police()

    def attach(self, pod):
        """A network namespace for the pod, on the bridge at the address ip_for gave it, with
        the hosts file every pod has (and, for a pod, a passwd entry for its user)."""
        pod.ip_for(self)
        n = pod.ip.rsplit(".", 1)[1]
        pod.ns = f"hxp{self.tag}-{n}"
        host_if, pod_if = f"hxh{self.tag}-{n}", f"hxc{self.tag}-{n}"
        run(["ip", "netns", "add", pod.ns])
        self.netns.append(pod.ns)
        run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if])
        run(["ip", "link", "set", host_if, "master", self.bridge, "up"])
        run(["ip", "link", "set", pod_if, "netns", pod.ns])
        # The addresses outside the cluster (outside_up) are reached on the bridge itself.
        routes = [["ip", "route", "add", f"{a}/32", "dev", "eth0"] for a in self.outside_addresses]
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", pod_if, "name", "eth0"],
            ["ip", "addr", "add", f"{pod.ip}/24", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            *routes,
        ):
            run(["ip", "netns", "exec", pod.ns, *cmd])
        etc = f"/etc/netns/{pod.ns}"
        os.makedirs(etc, exist_ok=True)
        with open(f"{etc}/hosts", "w") as f:
            f.write("\n".join(self.hosts + [f"{pod.ip} {pod.name}"]) + "\n")
        # The image's own /etc/passwd names its user; a uid unknown here gets an entry, so
        # programs that look their user up (initdb, postgres) find one.
        if pod.kind != "Client":
            uid, gid, _ = pod.security()
            p, g = open("/etc/passwd").read(), open("/etc/group").read()
            if not any(line.split(":")[2:3] == [str(uid)] for line in p.splitlines()):
                p += f"pod:x:{uid}:{gid}:pod:/nonexistent:/usr/sbin/nologin\n"
            if not any(line.split(":")[2:3] == [str(gid)] for line in g.splitlines()):
                g += f"pod:x:{gid}:\n"
            open(f"{etc}/passwd", "w").write(p)
            open(f"{etc}/group", "w").write(g)

    # --- NetworkPolicy, enforced as a CNI does -----------------------------------------
    #
    # Each rendered NetworkPolicy becomes nftables rules in the network namespace of every pod it
    # selects: an `input` chain for Ingress, an `output` chain for Egress, each ending in a drop
    # when some policy isolates the pod in that direction. Peers resolve to the addresses of the
    # namespaces standing here (pods, Jobs, clients, the bridge); see docs/proving-ground.md.
    # Semantics: kubernetes/website content/en/docs/concepts/services-networking/
    # network-policies.md ("Isolated and Non-isolated Pods", "Behavior of to and from selectors").

    def endpoints(self):
        """Everything with an address a peer can select: pods, Jobs, clients, and the bridge,
        which is the node and plays the ingress controller's namespace."""
        auditor = [self.auditor_ep] if self.auditor_ep is not None else []
        return [p for p in self.pods + self.jobs + self.crons + list(self.clients.values()) if p.ip] + [self.controller] + self.virtual + auditor

    def namespace_of(self, ep):
        return ep.namespace or self.namespace

    def namespace_labels(self, namespace):
        """The API server labels every namespace with its name (kubernetes.io/metadata.name);
        the ingress controller's namespace carries the label ops set on it (docs/operator.md)."""
        labels = {"kubernetes.io/metadata.name": namespace}
        if namespace == INGRESS_NAMESPACE:
            labels[INGRESS_CONTROLLER_LABEL] = "true"
        for d in self.docs:
            if d.get("kind") == "Namespace" and d["metadata"]["name"] == namespace:
                labels.update(d["metadata"].get("labels") or {})
        return labels

    def applies(self, ep, direction):
        """The policies selecting the endpoint for a direction ("Ingress" or "Egress")."""
        return [p for p in self.policies
                if (p["metadata"].get("namespace") or self.namespace) == self.namespace_of(ep)
                and selects(p["spec"].get("podSelector") or {}, ep.labels)
                and direction in policy_types(p["spec"])]

    def peer_selects(self, peer, policy_ns, ep):
        """A podSelector alone: pods of the policy's namespace; a namespaceSelector alone: every
        pod of the namespaces it selects; both: those pods of those namespaces."""
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self.namespace_labels(self.namespace_of(ep))):
                return False
        elif self.namespace_of(ep) != policy_ns:
            return False
        return selects(peer.get("podSelector") or {}, ep.labels)

    def nft_ports(self, ports, ep):
        """A rule's ports as nft matches, one per protocol; [""] for every port. A named port
        resolves through the destination pod's container ports (ingress only)."""
        if not ports:
            return [""]
        by_proto = {}
        for p in ports:
            proto = p.get("protocol", "TCP")
            if proto not in ("TCP", "UDP", "SCTP"):
                raise RuntimeError(f"NetworkPolicy port protocol {proto}: not translated")
            port = p.get("port")
            if isinstance(port, str):
                if ep is None or not ep.container:
                    raise RuntimeError(f"NetworkPolicy named port {port!r} in an egress rule: not translated")
                port = next((c["containerPort"] for c in ep.container.get("ports") or []
                             if c.get("name") == port and c.get("protocol", "TCP") == proto), None)
                if port is None:
                    continue  # names no port of this pod: matches nothing here
            if port is None:
                by_proto[proto] = None  # every port of the protocol
            elif by_proto.get(proto, []) is not None:
                by_proto.setdefault(proto, []).append(f"{port}-{p['endPort']}" if p.get("endPort") else str(port))
        return [f"meta l4proto {proto.lower()}" if nums is None else f"{proto.lower()} dport {{ {', '.join(nums)} }}"
                for proto, nums in by_proto.items()]

    def nft_chain(self, ep, direction):
        """The statements admitting what the policies allow in one direction, or None when no
        policy isolates the endpoint in it."""
        policies = self.applies(ep, direction)
        if not policies:
            return None
        key, field = ("from", "saddr") if direction == "Ingress" else ("to", "daddr")
        lines = []
        for pol in policies:
            policy_ns = pol["metadata"].get("namespace") or self.namespace
            for n, rule in enumerate(pol["spec"].get(direction.lower()) or []):
                note = f'comment "{pol["metadata"]["name"]} {direction.lower()}[{n}]"'
                ports = self.nft_ports(rule.get("ports"), ep if direction == "Ingress" else None)
                peers = rule.get(key) or []
                matches = [] if peers else [""]  # no peer listed: every source or destination
                addrs = sorted({e.ip for peer in peers if "ipBlock" not in peer for e in self.endpoints()
                                if self.peer_selects(peer, policy_ns, e)})
                if addrs:
                    matches.append(f"ip {field} {{ {', '.join(addrs)} }}")
                for peer in peers:
                    if "ipBlock" in peer:
                        block = peer["ipBlock"]
                        family = "ip6" if ":" in block["cidr"] else "ip"
                        m = f"{family} {field} {block['cidr']}"
                        if block.get("except"):
                            m += f" {family} {field} != {{ {', '.join(block['except'])} }}"
                        matches.append(m)
                lines += [f"{m} {p} accept {note}".replace("  ", " ").strip() for m in matches for p in ports]
        return lines

    def police(self):
        """Writes every endpoint's rules again (a new client is a new peer address)."""
        for ep in self.pods + self.jobs + self.crons + list(self.clients.values()):
            script = self.nft_script(ep)
            if getattr(ep, "script", None) == script:
                continue  # the new peer changes nothing here
            ep.script = script
            run(["ip", "netns", "exec", ep.ns, "nft", "-f", "-"], input=script)
            with open(os.path.join(self.scratch, f"{ep.name}.nft"), "w") as f:
                f.write(script)  # for inspection (--keep)

    def check_translation(self):
        """Every rendered workload's policies translate into rules nftables accepts (`nft -c`,
        checked, not applied), those of the pods that do not run here too (the TURN relay's port
        range, the videobridges' IPv6 blocks)."""
        refused = []
        # Every workload stands at an address of its own (100.64.0.0/10, shared address space,
        # RFC 6598), so that every peer resolves and every rule is written.
        self.virtual = [Pod("Template", name, name, tpl, 0) for name, tpl in self.templates()]
        for n, ep in enumerate(self.virtual):
            ep.ip = f"100.64.{n // 250}.{n % 250 + 1}"
        for ep in self.virtual:
            name = ep.name
            try:
                r = run(["ip", "netns", "exec", self.client_as({}, TENANT_NAMESPACE).ns, "nft", "-c", "-f", "-"],
                        check=False, input=self.nft_script(ep))
                if r.returncode != 0:
                    refused.append(f"{name}: {r.stderr.strip()[-200:]}")
            except RuntimeError as e:
                refused.append(f"{name}: {e}")
        self.virtual = []
        self.check("networkpolicy: every rendered workload's policies translate into nftables rules", not refused, "; ".join(refused))

    def nft_script(self, ep):
        """The endpoint's table: an input chain (Ingress) and an output chain (Egress), each
        only when a policy isolates it in that direction."""
        chains = []
        for direction, hook, first in (("Ingress", "input", ['iif "lo" accept', f"ip saddr {self.controller.ip} accept comment \"the node\""]),
                                       ("Egress", "output", ['oif "lo" accept'])):
            lines = self.nft_chain(ep, direction)
            if lines is not None:
                body = ["ct state established,related accept", *first, *lines, "drop"]
                chains.append(f"  chain {direction.lower()} {{\n    type filter hook {hook} priority filter; policy accept;\n"
                              + "".join(f"    {b}\n" for b in body) + "  }\n")
        script = "table inet hexagone\ndelete table inet hexagone\n"
        if chains:
            script += "table inet hexagone {\n" + "".join(chains) + "}\n"
        return script

    def client_as(self, labels, namespace=None):
        """A client standing as a pod with these labels in a namespace (the workplace's by
        default), in a network namespace of its own, under the policies that select it."""
        key = (namespace or self.namespace, tuple(sorted(labels.items())))
        if key not in self.clients:
            c = Pod("Client", "client", f"client-{len(self.clients) + 1}", {"metadata": {"labels": dict(labels)}, "spec": {"containers": [{}]}}, 0)
            c.namespace = key[0]
            self.attach(c)
            self.clients[key] = c
            self.police()
        return self.clients[key]

    def templates(self):
        """(workload name, pod template) of every rendered workload."""
        for d in self.docs:
            if d.get("kind") in ("StatefulSet", "Deployment", "Job"):
                yield d["metadata"]["name"], d["spec"]["template"]
            elif d.get("kind") == "CronJob":
                yield d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]

    def wearing(self, pod, port, secret=None):
        """The labels a check's client wears to stand as the application that talks to the pod
        on that port: the workload holding the credential the check uses (a secretKeyRef to
        it), else the first other workload the pod's ingress policies admit on the port. When
        the policies do not admit that workload, the check's client is refused: a finding."""
        for name, tpl in self.templates():
            # Not the server itself nor what wears its labels (the databases Job holds every
            # role's credential to create it, and is labelled as PostgreSQL).
            if not selects({"matchLabels": pod.labels}, tpl["metadata"].get("labels") or {}) and secret and any(
                    (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name") == secret
                    for c in tpl["spec"]["containers"] for e in c.get("env") or []):
                return tpl["metadata"]["labels"]
        admitted = []
        for pol in self.applies(pod, "Ingress"):
            for rule in pol["spec"].get("ingress") or []:
                nums = [p.get("port") for p in rule.get("ports") or []]
                if nums and port not in nums:
                    continue
                admitted += [peer["podSelector"].get("matchLabels") or {} for peer in rule.get("from") or []
                             if "podSelector" in peer and selects(peer.get("namespaceSelector") or {"matchLabels": {
                                 "kubernetes.io/metadata.name": self.namespace_of(pod)}}, self.namespace_labels(self.namespace_of(pod)))]
        others = [a for a in admitted if not selects({"matchLabels": a}, pod.labels)]
        return (others or admitted or [pod.labels])[0]

    def secret_of(self, pod, var):
        """The Secret a container's env variable names (secretKeyRef), or None."""
        e = next((e for e in pod.container.get("env") or [] if e["name"] == var), {})
        return (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name")

    def outside_up(self):
        """Hosts outside the cluster, in a namespace of their own on the bridge: each address
        an egress ipBlock lists (its first host) and one no policy lists, each with a TCP
        listener on the listed ports and on a port no policy lists (outside_destinations)."""
        self.controller = Pod("Client", "ingress-controller", "ingress-controller", {"spec": {"containers": [{}]}}, 0)
        self.controller.namespace, self.controller.ip = INGRESS_NAMESPACE, f"{self.subnet}.1"
        self.outside = outside_destinations(self.docs)
        self.outside_addresses = sorted({addr for addr, _, _ in self.outside})
        if not self.outside_addresses:
            return
        ns = f"hxp{self.tag}-out"
        run(["ip", "netns", "add", ns])
        self.netns.append(ns)
        host_if, out_if = f"hxh{self.tag}-out", f"hxc{self.tag}-out"
        run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", out_if])
        run(["ip", "link", "set", host_if, "master", self.bridge, "up"])
        run(["ip", "link", "set", out_if, "netns", ns])
        cmds = [["ip", "link", "set", "lo", "up"], ["ip", "link", "set", out_if, "name", "eth0"], ["ip", "link", "set", "eth0", "up"]]
        cmds += [["ip", "addr", "add", f"{a}/32", "dev", "eth0"] for a in self.outside_addresses]
        cmds += [["ip", "route", "add", f"{self.subnet}.0/24", "dev", "eth0"]]
        for cmd in cmds:
            run(["ip", "netns", "exec", ns, *cmd])
        targets = sorted({f"{a}:{p}" for a, p, _ in self.outside})
        self.relay_log = os.path.join(self.scratch, "relay-mail.log")
        self.listeners.append(subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", LISTEN,
                                                f"log={self.relay_log}", *targets],
                                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.scratch, "outside.log"), "ab"),
                                               start_new_session=True))

    # --- the auditor, where the filer's notifications go ---------------------------------

    def notification_url(self):
        """The auditor URL the rendered filer notifies (its notification.toml), or None."""
        for data in self.configmaps.values():
            m = re.search(r'endpoint = "(http://[^"]+)"', data.get("notification.toml", ""))
            if m:
                return m.group(1)
        return None

    def auditor_up(self):
        """The auditor as the rendering expects it (namespace hexagone-audit, pods and Service
        hexagone-auditor, its port; platform/src/workplace/render.rs): an address of its own,
        named by its Service in every pod's hosts file, selected by the filer's egress policy as
        a pod of that namespace with its labels. Its ledger, key, policy and inventory (the
        endpoint the URL names, at the filer's addresses) in the scratch root, and the writer
        token the filer's env takes from the Secret the operations guide has ops create, made
        by `serve token add` (docs/auditor-service.md)."""
        url = self.notification_url()
        if self.auditor is None or url is None:
            return
        u = urllib.parse.urlsplit(url)
        service, namespace = u.hostname.split(".")[:2]
        ep = Pod("Client", service, service, {"metadata": {"labels": {"app.kubernetes.io/name": service}},
                                              "spec": {"containers": [{}]}}, 0)
        ep.namespace, ep.ip = namespace, self.address()
        ep.port = u.port
        ep.endpoint = dict(urllib.parse.parse_qsl(u.query))["endpoint"]
        names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
        self.hosts.append(f"{ep.ip} {' '.join(names)}")
        d = os.path.join(self.scratch, "auditor")
        os.makedirs(d)
        run([self.auditor, "keygen", "--name", "proving.hexagone.test/ledger", "--out", os.path.join(d, "ledger.key")])
        token = subprocess.run([self.auditor, "serve", "token", "add", "seaweedfs", "--tokens", os.path.join(d, "tokens")],
                               capture_output=True, text=True, check=True).stdout.strip()
        for (name, key) in [(n, k) for n, k in self.secret_refs() if n == "hexagone-auditor-token"]:
            self.secrets[(name, key)] = token
        ep.dir = d
        self.auditor_ep = ep

    def secret_refs(self):
        """Every (Secret, key) a rendered container's env names."""
        for pod in self.pods + self.jobs + self.crons:
            for c in (pod.spec.get("initContainers") or []) + pod.spec["containers"]:
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        yield ref["name"], ref["key"]

    def auditor_start(self):
        """`hexagone-auditor serve` in the auditor's namespace, once it listens."""
        ep, d = self.auditor_ep, self.auditor_ep.dir
        filers = [p.ip_for(self) for p in self.pods if p.adapter() == "seaweedfs" and (p.container.get("args") or [""])[0] == "filer"]
        with open(os.path.join(d, "inventory.yaml"), "w") as f:
            f.write(f"- name: {ep.endpoint}\n  addresses: [{', '.join(filers) or ep.ip}]\n")
        policy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policies", "france-standard.yaml")
        ep.db = f"sqlite:{os.path.join(d, 'ledger.sqlite')}"
        self.auditor_proc = subprocess.Popen(
            ["ip", "netns", "exec", ep.ns, self.auditor, "serve", "--db", ep.db, "--key", os.path.join(d, "ledger.key"),
             "--policy", policy, "--tokens", os.path.join(d, "tokens"), "--inventory", os.path.join(d, "inventory.yaml"),
             "--listen", f"{ep.ip}:{ep.port}"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.scratch, "auditor.log"), "ab"), text=True,
            start_new_session=True)
        line = self.auditor_proc.stdout.readline()
        if not line.startswith("serve listening on "):
            raise RuntimeError(f"hexagone-auditor serve did not start: {line!r}; {tail(self.scratch, 'auditor')}")

    def ledger(self):
        """The auditor's entries so far, as `export` writes them."""
        out = os.path.join(self.auditor_ep.dir, "bundle.jsonl")
        r = subprocess.run([self.auditor, "export", "--db", self.auditor_ep.db, "--out", out], capture_output=True, text=True)
        if r.returncode != 0:
            return []
        return [json.loads(line)["entry"] for line in open(out) if line.startswith('{"entry":')]

    def check_notifications(self):
        """The rendered filer notifies the auditor (SeaweedFS's webhook notifier, configured by
        the rendering's notification.toml, its token from the Secret): a document put through S3
        with the rendered credentials is recorded, as its bucket's and key's SHA-256 on the
        endpoint the URL names, and so is each backup's dump, written by `weed filer.copy`
        (docs/auditor-service.md, "SeaweedFS"). Deletions are not recorded yet (docs/proving-
        ground.md)."""
        if self.auditor_ep is None:
            log("notifications: not checked: " + ("no auditor binary given" if self.auditor is None else "no filer notification rendered"))
            return
        s3 = getattr(self, "s3", None)
        name = "seaweedfs: the filer notifies the auditor of a document put through S3"
        if s3 is None:
            self.check(name, False, "S3 is not ready")
            return
        _, client, url, key, secret = s3
        bucket, obj = "documents", f"spaces/7/proving-{self.tag}.odt"
        steps = []
        # The bucket (made, or already there: 409), then the document. An InternalError (500,
        # "please try again") is asked again, as S3 clients do, for up to S3_RETRY_SECONDS:
        # the filer answers it while no volume server has a writable volume yet.
        for target, body, accepted in [(f"{url}{bucket}", None, (200, 409)),
                                       (f"{url}{bucket}/{obj}", "compte rendu de la réunion", (200,))]:
            data = (body or "").encode()
            until = time.monotonic() + S3_RETRY_SECONDS
            while True:
                status, text = self.http(client, target, method="PUT", body=body, headers=sigv4("PUT", target, key, secret, data))
                steps.append(f"PUT {target[len(url):]}: {status}")
                if status not in (500, 503) or time.monotonic() >= until:
                    break
                time.sleep(1)
            if status not in accepted:
                self.check(name, False, f"{'; '.join(steps)}: {text[-200:]}")
                return
        digest = lambda s: hashlib.sha256(s.encode() + b"\0").hexdigest()  # noqa: E731 - events.rs `digest`
        wanted = [(bucket, obj)] + [(b, k) for b, k in getattr(self, "dumps", [])]
        ids = {(f"seaweedfs/{self.auditor_ep.endpoint}/bucket-sha256:{digest(b)}", f"sha256:{digest(k)}"): (b, k) for b, k in wanted}
        deadline = time.monotonic() + 20
        seen = set()
        while time.monotonic() < deadline and len(seen) < len(ids):
            seen = {(e.get("store"), e.get("object")) for e in self.ledger() if e.get("kind") == "observation"} & set(ids)
            time.sleep(0.5)
        for (store, object_id), (b, k) in ids.items():
            what = name if (b, k) == (bucket, obj) else f"seaweedfs: the filer notifies the auditor of the backup's dump in {b}"
            self.check(what, (store, object_id) in seen,
                       f"{'; '.join(steps)}; {len(self.ledger())} entries, none of {b}/{k}; {tail(self.scratch, 'auditor')}")

    # --- a pod's environment and volumes ------------------------------------------------

    def prepare(self, pod):
        uid, gid, fs_group = pod.security()
        pod.root = os.path.join(self.scratch, pod.name.split(".")[0])
        os.makedirs(pod.root, exist_ok=True)
        volumes = {v["name"]: v for v in pod.spec.get("volumes", []) or []}
        owner_gid = int(fs_group) if fs_group is not None else gid
        for m in pod.container.get("volumeMounts", []) or []:
            vol = volumes.get(m["name"], {"persistentVolumeClaim": {}})  # claim templates
            path = os.path.join(pod.root, "vol", m["name"], m.get("subPath", ""))
            if "configMap" in vol:
                data = self.configmaps.get(vol["configMap"]["name"])
                if data is None:
                    raise RuntimeError(f"{pod.name}: volume {m['name']} names ConfigMap {vol['configMap']['name']}, not rendered")
                if vol["configMap"].get("items"):
                    raise RuntimeError(f"{pod.name}: ConfigMap volume items are not translated yet")
                # The whole ConfigMap as a directory of files, or with subPath one key as a file.
                files = {m["subPath"]: data.get(m["subPath"])} if m.get("subPath") else data
                target = os.path.dirname(path) if m.get("subPath") else path
                os.makedirs(target, exist_ok=True)
                for k, v in files.items():
                    if v is None:
                        raise RuntimeError(f"{pod.name}: subPath {k} is no key of ConfigMap {vol['configMap']['name']}")
                    open(os.path.join(target, k), "w").write(v)
                    os.chmod(os.path.join(target, k), 0o644)
            elif "secret" in vol:
                # The kubelet's Secret volume: the keys (or the `items` named) as files, owned
                # by root and the pod's fsGroup, mode `defaultMode` (or an item's `mode`).
                sv = vol["secret"]
                items = sv.get("items") or [{"key": k, "path": k} for k in self.secret_keys(sv["secretName"])]
                files = {i["path"]: (self.secret(sv["secretName"], i["key"]), i.get("mode", sv.get("defaultMode", 0o644))) for i in items}
                if m.get("subPath"):
                    files = {m["subPath"]: files.get(m["subPath"]) or fail(f"{pod.name}: subPath {m['subPath']} is no file of Secret {sv['secretName']}")}
                target = os.path.dirname(path) if m.get("subPath") else path
                os.makedirs(target, exist_ok=True)
                for k, (v, mode) in files.items():
                    open(os.path.join(target, k), "w").write(v)
                    os.chown(os.path.join(target, k), 0, owner_gid)
                    os.chmod(os.path.join(target, k), mode)
            elif m["name"] in pod.claims and pod.claims[m["name"]]:
                # The claim: a volume of the capacity it requests, empty on first use; a tmpfs
                # (its pages are only what is written).
                top = os.path.join(pod.root, "vol", m["name"])
                os.makedirs(top, exist_ok=True)
                with self.lock:
                    if top not in self.bound:
                        run(["mount", "-t", "tmpfs", "-o", f"size={quantity_bytes(pod.claims[m['name']])},mode=0755", "tmpfs", top])
                        self.bound.append(top)
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(path, exist_ok=True)
            readonly = "configMap" in vol or "secret" in vol
            for dirpath, dirs, files in os.walk(os.path.join(pod.root, "vol", m["name"])):
                os.chown(dirpath, 0 if readonly else uid, owner_gid)
                os.chmod(dirpath, 0o755 if readonly else 0o2775)
            pod.mounts[m["mountPath"]] = path
        # A mount inside another one's path (Keycloak's realm file in /opt/keycloak/data/import)
        # appears inside the outer volume, as a symbolic link.
        for mp, path in pod.mounts.items():
            outer = max((o for o in pod.mounts if mp.startswith(o.rstrip("/") + "/")), key=len, default=None)
            if outer is not None:
                link = os.path.join(pod.mounts[outer], os.path.relpath(mp, outer))
                os.makedirs(os.path.dirname(link), exist_ok=True)
                if not os.path.lexists(link):
                    os.symlink(path, link)
        # The processes see the scratch directories, not the mount paths: a ConfigMap file that
        # names a mount path (homeserver.yaml's media_store_path) is rewritten as args are.
        for m in pod.container.get("volumeMounts", []) or []:
            if "configMap" in volumes.get(m["name"], {}):
                target = pod.mounts[m["mountPath"]]
                for f in [target] if os.path.isfile(target) else glob.glob(os.path.join(target, "*")):
                    text = open(f).read()
                    if self.local(pod, text) != text:
                        open(f, "w").write(self.local(pod, text))
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod.name, "HOME": "/nonexistent"}
        for ef in pod.container.get("envFrom", []) or []:
            if "configMapRef" in ef:
                env.update(self.configmaps.get(ef["configMapRef"]["name"], {}))
            elif "secretRef" in ef:
                raise RuntimeError(f"{pod.name}: envFrom secretRef is not translated yet")
        for e in pod.container.get("env", []) or []:
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
            elif "valueFrom" in e:
                vf = e["valueFrom"]
                if "secretKeyRef" in vf:
                    env[e["name"]] = self.secret(vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"])
                elif "configMapKeyRef" in vf:
                    env[e["name"]] = self.configmaps[vf["configMapKeyRef"]["name"]][vf["configMapKeyRef"]["key"]]
                elif "fieldRef" in vf:
                    field = vf["fieldRef"]["fieldPath"]
                    env[e["name"]] = {
                        "metadata.name": pod.name,
                        "metadata.namespace": self.namespace,
                        "status.podIP": pod.ip,
                    }.get(field) or fail(f"{pod.name}: fieldRef {field} is not translated yet")
                else:
                    raise RuntimeError(f"{pod.name}: env {e['name']}: valueFrom {list(vf)} is not translated yet")
            else:
                env[e["name"]] = ""
        pod.env = {k: self.local(pod, v) for k, v in env.items()}
        if pod.adapter() == "seaweedfs":
            # The image's /usr/bin/weed: the build of its release in the cache, on the PATH
            # (the backup's upload runs `sh -c 'weed filer.copy ...'`).
            pod.env["PATH"] = f"{self.weed(pod)}:{pod.env['PATH']}"

    def local(self, pod, value):
        """A value with every mount path rewritten to its scratch directory, in one pass (a
        rewritten path is never rewritten again), the longest mount path first."""
        if not pod.mounts:
            return value
        alternatives = "|".join(re.escape(m) for m in sorted(pod.mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w/.])({alternatives})(?=/|$|[\s:;,'\"])", lambda m: pod.mounts[m.group(1)], value)

    def argv(self, pod):
        c = pod.container
        return [self.local(pod, expand(a, pod.env)) for a in (c.get("command") or []) + (c.get("args") or [])]

    def spawn(self, pod, argv, log_name, cwd=None):
        if pod.kind in ("StatefulSet", "Deployment"):
            pod.respawn = (argv, log_name, cwd)
        uid, gid, fs_group = pod.security()
        groups = str(fs_group) if fs_group is not None else str(gid)
        cmd = [
            "ip", "netns", "exec", pod.ns,
            "setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={groups}",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            "env", "-i", *[f"{k}={v}" for k, v in pod.env.items()],
            *argv,
        ]
        out = open(os.path.join(self.scratch, f"{log_name}.log"), "ab")
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or pod.root, start_new_session=True)

    def as_pod(self, pod, argv, timeout=30, env=None):
        """Runs one command in the pod's namespace, as its user, with its env; returns the result."""
        uid, gid, _ = pod.security() if pod.kind != "Client" else (65534, 65534, None)
        e = dict(pod.env if pod.kind != "Client" else {"PATH": "/usr/bin:/bin"})
        e.update(env or {})
        cmd = ["ip", "netns", "exec", pod.ns, "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
               "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "env", "-i",
               *[f"{k}={v}" for k, v in e.items()], *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")

    # --- the images' entrypoint contracts, on the local installs -----------------------

    def start(self, pod):
        kind = pod.adapter()
        argv = self.argv(pod)
        if kind == "postgres":
            # The postgres image's entrypoint: a first start initialises $PGDATA with
            # $POSTGRES_USER as superuser whose password is $POSTGRES_PASSWORD, password
            # authentication for every host, then runs `postgres` with the args after it
            # (docker-library/postgres 17/bookworm/docker-entrypoint.sh: docker_init_database_dir,
            # pg_setup_hba_conf).
            pgdata = pod.env.get("PGDATA") or fail(f"{pod.name}: no PGDATA")
            pwfile = os.path.join(pod.root, "pwfile")
            open(pwfile, "w").write(pod.env["POSTGRES_PASSWORD"])
            uid, gid, _ = pod.security()
            os.chown(pwfile, uid, gid)
            r = self.as_pod(pod, [pg_bin("initdb"), "-D", pgdata, "-U", pod.env.get("POSTGRES_USER", "postgres"),
                                  f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                                  "--encoding=UTF8", "--locale=C.UTF-8"], timeout=120)
            os.unlink(pwfile)
            if r.returncode != 0:
                raise RuntimeError(f"initdb: {r.stderr.strip()[-400:]}")
            with open(os.path.join(pgdata, "pg_hba.conf"), "a") as f:
                f.write("host all all all scram-sha-256\n")
            if argv[:1] != ["postgres"]:
                raise RuntimeError(f"args {argv[:1]}: the postgres adapter expects `postgres ...`")
            sock = pod.mounts.get("/var/run/postgresql") or fail(f"{pod.name}: no /var/run/postgresql mount")
            argv = [pg_bin("postgres"), *argv[1:], "-D", pgdata, "-c", "listen_addresses=*", "-k", sock]
        elif kind == "mariadb":
            # The mysql image's entrypoint: a first start initialises the data directory, sets
            # root's password to $MYSQL_ROOT_PASSWORD, creates $MYSQL_DATABASE and $MYSQL_USER
            # (password $MYSQL_PASSWORD) with every right on it (docker-library/mysql
            # 8.4/docker-entrypoint.sh, docker_setup_db); MariaDB stands in for MySQL.
            datadir = pod.mounts.get("/var/lib/mysql") or fail(f"{pod.name}: no /var/lib/mysql mount")
            run_dir = pod.mounts.get("/var/run/mysqld") or fail(f"{pod.name}: no /var/run/mysqld mount")
            tmp = pod.mounts.get("/tmp", os.path.join(pod.root, "vol"))
            r = self.as_pod(pod, ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}",
                                  "--skip-test-db"], timeout=180)
            if r.returncode != 0:
                raise RuntimeError(f"mariadb-install-db: {(r.stderr or r.stdout).strip()[-400:]}")
            db, user = pod.env.get("MYSQL_DATABASE"), pod.env.get("MYSQL_USER")
            sql = [f"ALTER USER 'root'@'localhost' IDENTIFIED BY {sql_str(pod.env['MYSQL_ROOT_PASSWORD'])};"]
            # MYSQL_ROOT_HOST defaults to '%': the image lets root in from any host with its
            # password (docker-library/mysql 8.4/docker-entrypoint.sh, docker_setup_db).
            root_host = pod.env.get("MYSQL_ROOT_HOST", "%")
            if root_host != "localhost":
                sql.append(f"CREATE USER IF NOT EXISTS 'root'@{sql_str(root_host)} IDENTIFIED BY {sql_str(pod.env['MYSQL_ROOT_PASSWORD'])};")
                sql.append(f"GRANT ALL ON *.* TO 'root'@{sql_str(root_host)} WITH GRANT OPTION;")
            if db:
                sql.append(f"CREATE DATABASE IF NOT EXISTS `{db}`;")
            if user:
                sql.append(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY {sql_str(pod.env['MYSQL_PASSWORD'])};")
                if db:
                    sql.append(f"GRANT ALL ON `{db}`.* TO '{user}'@'%';")
            init = os.path.join(run_dir, "init.sql")
            open(init, "w").write("\n".join(sql) + "\n")
            uid, gid, _ = pod.security()
            os.chown(init, uid, gid)
            os.chmod(init, 0o600)
            argv = ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={run_dir}/mysqld.sock",
                    f"--pid-file={run_dir}/mysqld.pid", f"--tmpdir={tmp}", "--bind-address=0.0.0.0",
                    f"--port={pod.container['ports'][0]['containerPort']}", f"--init-file={init}", *argv]
        elif kind == "synapse":
            argv = self.synapse_argv(pod, argv)
        elif kind == "keycloak":
            argv = self.keycloak_argv(pod)
        elif kind == "seaweedfs":
            if pod.container.get("command"):
                return self.spawn(pod, argv, pod.name)
            argv = self.seaweedfs_argv(pod, argv)
            # The image's WORKDIR is /data (docker/Dockerfile.go_build:129).
            return self.spawn(pod, argv, pod.name, cwd=pod.mounts.get("/data"))
        elif kind == "valkey":
            # Redis stands in for Valkey (bookworm packages no valkey-server); the image's
            # working directory is /data, and its server is built with protected mode off (the
            # Dockerfile patches the default in src/config.c; valkey-io/valkey-container
            # 9.0/debian/Dockerfile), which Debian's Redis has on: given first, the rendered
            # arguments can still set it.
            if argv[:1] != ["valkey-server"]:
                raise RuntimeError(f"args {argv[:1]}: the valkey adapter expects `valkey-server ...`")
            argv = ["redis-server", "--protected-mode", "no", *argv[1:]]
            return self.spawn(pod, argv, pod.name, cwd=pod.mounts.get("/data"))
        return self.spawn(pod, argv, pod.name)

    def weed(self, pod):
        """The directory holding `weed` of the pod's image release, built from its Go module
        (tests/scripts/seaweedfs.sh), bind-mounted read-only under the scratch root."""
        release = pod.image.rsplit(":", 1)[-1]
        cache = os.environ.get("HEXAGONE_CACHE") or os.path.expanduser("~/.cache/hexagone")
        built = sorted(glob.glob(os.path.join(cache, "seaweedfs", f"{release}-go*", "installed")))
        if not built:
            raise RuntimeError(f"no weed {release} in {cache}/seaweedfs (tests/scripts/seaweedfs.sh builds it)")
        return self.cached("seaweedfs", os.path.basename(os.path.dirname(built[-1])), "")

    def seaweedfs_argv(self, pod, argv):
        """The seaweedfs image's entrypoint (docker/entrypoint.sh:62-155, run as a non-root
        user: no chown, no su-exec): `master` gets `-mdir=/data -volumeSizeLimitMB=1024`,
        `volume` `-dir=/data -max=0` (`-dir=/data` alone when -max is given), `filer` nothing,
        each with `-logtostderr=true`; any other first argument runs `weed` with the arguments as
        given. The image's /etc/seaweedfs (its filer.toml, docker/Dockerfile.go_build:92-93, and
        the files mounted there) is a directory of the scratch root given with `-config_dir`,
        the first place weed looks (weed/util/config.go:50, weed/weed.go:47)."""
        weed = os.path.join(self.weed(pod), "weed")
        role, rest = (argv[0], argv[1:]) if argv else ("mini", ["-dir=/data"])
        passed = lambda flag: any(a in (flag, "-" + flag) or a.startswith((flag + "=", "-" + flag + "=")) for a in rest)  # noqa: E731
        extra = {"master": ["-mdir=/data", "-volumeSizeLimitMB=1024"],
                 "volume": ["-dir=/data"] + ([] if passed("-max") else ["-max=0"]),
                 "filer": []}.get(role)
        etc = os.path.join(pod.root, "image", "etc", "seaweedfs")
        os.makedirs(etc, exist_ok=True)
        toml = open(os.path.join(self.weed(pod), "filer.toml")).read()
        open(os.path.join(etc, "filer.toml"), "w").write(self.local(pod, toml))
        for mp, path in pod.mounts.items():
            if os.path.dirname(mp) == "/etc/seaweedfs":
                target = os.path.join(etc, os.path.basename(mp))
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(path, target)
        head = [weed, f"-config_dir={etc}"]
        if extra is None:
            return head + [role, *rest]
        return head + ["-logtostderr=true", role, *[self.local(pod, a) for a in extra], *rest]

    def synapse_argv(self, pod, argv):
        """The synapse image's entrypoint, docker/start.py in `run` mode (the default: the pod
        renders no args): not root and no `UID` given, it runs `python -m $SYNAPSE_WORKER`
        (default synapse.app.homeserver) with the args after the mode and, when none is a
        config path, `--config-path $SYNAPSE_CONFIG_PATH` (default $SYNAPSE_CONFIG_DIR, /data,
        + /homeserver.yaml), which must exist; libjemalloc preloaded when present
        (element-hq/synapse@v1.141.0:docker/start.py:203-289). The image's Python is the
        package's virtual environment here (tests/scripts/proving-packages.sh)."""
        env = pod.env
        mode = argv[0] if argv else "run"
        if mode != "run":
            raise RuntimeError(f"synapse image mode {mode!r}: only `run` starts a homeserver")
        if "UID" in env or pod.security()[0] == 0:
            raise RuntimeError("the synapse image switches user (UID set or root): not translated")
        args = argv[1:]
        if "-m" not in args:
            args = ["-m", env.get("SYNAPSE_WORKER", "synapse.app.homeserver"), *args]
        if not any(a.startswith(("--config-path", "-c")) for a in args):
            config = env.get("SYNAPSE_CONFIG_PATH") or self.local(pod, env.get("SYNAPSE_CONFIG_DIR", "/data") + "/homeserver.yaml")
            if not os.path.exists(config):
                raise RuntimeError(f"Config file '{config}' does not exist (docker/start.py refuses to start)")
            args += ["--config-path", config]
        pod.config_path = next(a.split("=", 1)[1] if "=" in a else args[i + 1]
                               for i, a in enumerate(args) if a.startswith(("--config-path", "-c")))
        jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
        if os.path.isfile(jemalloc):
            env["LD_PRELOAD"] = jemalloc
        version = pod.image.rsplit(":", 1)[-1].lstrip("v")
        # The HTTPS calls Synapse makes through the Ingress (its OIDC issuer) trust the run's
        # certificate authority (tests/proving/ingress.py).
        if self.ingress is not None:
            env["SSL_CERT_FILE"] = self.ingress.ca
        return [os.path.join(self.venv("synapse", version), "bin", "python"), *args]

    def keycloak_argv(self, pod):
        """The keycloak image: the distribution in /opt/keycloak, owned by uid 1000, entrypoint
        /opt/keycloak/bin/kc.sh (keycloak/keycloak quarkus/container/Dockerfile: `ENTRYPOINT [
        "/opt/keycloak/bin/kc.sh" ]`); a container's `command` replaces it (the copy-quarkus
        init container). The image's /opt/keycloak is made here for each container: the
        distribution from the cache (tests/scripts/proving-packages.sh), read-only, where the
        container mounts nothing, and its volumes where it mounts them (lib/quarkus, data).
        Java: the machine's 17,
        which Keycloak 26 supports (keycloak.org/server/supported-configurations: OpenJDK 17,
        21, 25; the image runs 21)."""
        version = pod.image.rsplit(":", 1)[-1]
        cache = os.environ.get("HEXAGONE_CACHE") or os.path.expanduser("~/.cache/hexagone")
        dist = os.path.join(cache, "keycloak", version, f"keycloak-{version}")
        if not os.path.exists(os.path.join(cache, "keycloak", version, "installed")):
            raise RuntimeError(f"{dist}: not installed (tests/scripts/proving-packages.sh --keycloak installs it)")
        # A tree of hard links to the distribution, owned by root: real directories (the build
        # fails on symbolic links), files the pod's user cannot change, no copy.
        home = os.path.join(pod.root, "image", pod.container["name"])
        os.makedirs(os.path.dirname(home), exist_ok=True)
        run(["cp", "-al", dist, home])
        # The volumes are bind mounts over the image's directories, as the kubelet's.
        for entry in ("lib/quarkus", "data"):
            volume = pod.mounts.get(f"/opt/keycloak/{entry}")
            if volume is not None:
                os.makedirs(os.path.join(home, entry), exist_ok=True)
                run(["mount", "--bind", volume, os.path.join(home, entry)])
                with self.lock:
                    self.bound.append(os.path.join(home, entry))
        pod.mounts["/opt/keycloak"] = home
        argv = self.argv(pod)
        return argv if pod.container.get("command") else [os.path.join(home, "bin", "kc.sh"), *argv]

    def venv(self, name, version):
        """The package's virtual environment in the cache (tests/scripts/proving-packages.sh)."""
        return self.cached(name, version, "venv")

    def cached(self, name, version, sub):
        """A package installed in the cache (tests/scripts/proving-packages.sh), bind-mounted
        read-only under the scratch root: the cache is under root's home, which the pods'
        users cannot enter."""
        cache = os.environ.get("HEXAGONE_CACHE") or os.path.expanduser("~/.cache/hexagone")
        src = os.path.join(cache, name, version, sub)
        if not os.path.exists(os.path.join(cache, name, version, "installed")):
            raise RuntimeError(f"{src}: not installed (tests/scripts/proving-packages.sh installs {name} {version})")
        dst = os.path.join(self.scratch, "opt", name)
        with self.lock:
            if dst in self.bound:
                return dst
            os.makedirs(dst, exist_ok=True)
            os.chmod(os.path.dirname(dst), 0o755)
            run(["mount", "--bind", src, dst])
            self.bound.append(dst)
            run(["mount", "-o", "remount,bind,ro", dst])
        return dst

    def backend(self, service, port):
        """The Ingress's backend: the address and port of a running pod the Service selects;
        "down" when its pods run here but none is running now; None when none runs here."""
        svc = next((x for x in self.services if x["metadata"]["name"] == service and x["spec"].get("clusterIP") != "None"), None)
        if svc is None:
            return None
        sp = next((p for p in svc["spec"].get("ports", []) if port in (p.get("port"), p.get("name"))), None)
        sel = svc["spec"].get("selector") or {}
        selected = [p for p in self.pods if sp and sel and all(p.labels.get(k) == v for k, v in sel.items())]
        for pod in selected:
            if pod.proc and pod.proc.poll() is None:
                return pod.ip, self.port(pod, sp.get("targetPort", sp["port"]))
        return "down" if selected else None

    # --- probes ---------------------------------------------------------------------------

    def port(self, pod, port):
        if isinstance(port, int):
            return port
        for p in pod.container.get("ports", []) or []:
            if p.get("name") == port:
                return p["containerPort"]
        raise RuntimeError(f"{pod.name}: probe port {port!r} names no container port")

    def probe_once(self, pod, probe):
        """One run of a rendered probe, as the kubelet runs it: from the node for tcpSocket and
        httpGet, in the container for exec. Returns None when it passes, else why not."""
        timeout = probe.get("timeoutSeconds", 1)
        if "tcpSocket" in probe:
            port = self.port(pod, probe["tcpSocket"]["port"])
            try:
                socket.create_connection((pod.ip, port), timeout=timeout).close()
                return None
            except OSError as e:
                return f"tcpSocket {port}: {e}"
        if "httpGet" in probe:
            h = probe["httpGet"]
            port = self.port(pod, h["port"])
            url = f"{h.get('scheme', 'HTTP').lower()}://{pod.ip}:{port}{h.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    return None if 200 <= r.status < 400 else f"{url}: {r.status}"
            except Exception as e:  # noqa: BLE001 - any failure is the probe's answer
                return f"{url}: {e}"
        if "exec" in probe:
            r = self.as_pod(pod, [self.local(pod, a) for a in probe["exec"]["command"]], timeout=max(timeout, 5))
            return None if r.returncode == 0 else f"exec: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"
        return f"probe kind {list(probe)} not translated"

    def launch(self, pod, deadline):
        try:
            for c in pod.spec.get("initContainers") or []:
                view = pod.init_view(c)
                view.ns, view.ip = pod.ns, pod.ip
                self.prepare(view)
                started = time.monotonic()
                proc = self.start(view)
                try:
                    rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill(proc)
                    raise RuntimeError(f"init container {c['name']}: not done within the budget")
                if rc != 0:
                    raise RuntimeError(f"init container {c['name']}: exit {rc}: {tail(self.scratch, view.name)}")
                pod.inits.append(f"{c['name']} {time.monotonic() - started:.1f} s")
            self.prepare(pod)
            pod.proc = self.start(pod)
        except Exception as e:  # noqa: BLE001 - reported per component
            self.results[pod.name] = ("failed", str(e))

    def wait_ready(self, pod, deadline):
        probe = pod.container.get("readinessProbe") or pod.container.get("startupProbe")
        if probe is None:
            return "no readiness probe rendered"
        why = "not probed"
        backoff = 1.0
        while pod.proc is None and pod.name not in self.results and time.monotonic() < deadline:
            time.sleep(0.2)  # its init containers run
        if pod.name in self.results:
            return self.results[pod.name][1]
        while time.monotonic() < deadline:
            if pod.proc.poll() is not None:
                # The kubelet restarts an exited container of a StatefulSet or Deployment pod
                # (restartPolicy Always) with a back-off (10 s doubling to 5 min); here 1 s
                # doubling to 8 s, within the budget. Synapse started before the databases Job
                # created its role exits, and comes back once the Job has run.
                why = f"exited {pod.proc.returncode}: {tail(self.scratch, pod.name)}"
                if pod.spec.get("restartPolicy", "Always") != "Always" or time.monotonic() + backoff >= deadline:
                    return why
                time.sleep(backoff)
                backoff = min(backoff * 2, 8.0)
                pod.restarts += 1
                pod.proc = self.spawn(pod, *pod.respawn)
                continue
            why = self.probe_once(pod, probe)
            if why is None:
                return None
            time.sleep(0.5)
        return f"not ready within {self.budget:.0f} s: {why}"

    # --- the whole run --------------------------------------------------------------------

    def go(self):
        self.read()
        self.net_up()
        if self.ingresses:
            self.ingress = Ingress(self.ingresses, f"{self.subnet}.1", self.scratch, self.backend)
        deadline = self.started + self.budget
        # Every pod starts at once, each in a thread: its init containers in order, each to
        # completion, then its container.
        starting = [threading.Thread(target=self.launch, args=(pod, deadline)) for pod in self.pods]
        for t in starting:
            t.start()
        # The Jobs run while the pods start, as in the cluster (the databases Job waits for
        # PostgreSQL itself: `until pg_isready`).
        threads = []
        for job in self.jobs:
            if job.spec.get("initContainers"):
                job.skip_reason = "its init containers are not translated yet"
            if job.adapter() is None or job.skip_reason:
                self.skipped.append(job)
                continue
            t = threading.Thread(target=lambda j=job: self.results.__setitem__(j.name, self.run_job(j, deadline)))
            t.start()
            threads.append(t)
        for pod in self.pods:
            why = self.wait_ready(pod, deadline)
            took = f"{time.monotonic() - self.started:.1f} s" + (f", {pod.restarts} restart{'s' if pod.restarts > 1 else ''}" if pod.restarts else "")
            took += "".join(f", init {i}" for i in pod.inits)
            self.results[pod.name] = ("ready", took) if why is None else ("failed", why)
        for t in threads + starting:
            t.join()
        self.all_ready = time.monotonic() - self.started
        self.checks = []
        self.check_identity()
        self.check_databases()
        self.check_mysql()
        self.check_valkey()
        self.check_synapse()
        self.check_keycloak()
        self.check_isolation()
        self.check_mail()
        self.check_translation()
        self.check_matrix_admin()
        self.check_seaweedfs()
        self.check_backups()
        self.check_notifications()

    def run_job(self, job, deadline):
        try:
            self.prepare(job)
            argv = self.argv(job)
            # The synapse image's console script, from the same package in the cache (its
            # entry points, matrix_synapse-1.141.0.dist-info/entry_points.txt:
            # register_new_matrix_user=synapse._scripts.register_new_matrix_user:main).
            if job.adapter() == "synapse" and argv and argv[0] == "register_new_matrix_user":
                version = job.image.rsplit(":", 1)[-1].lstrip("v")
                argv = [os.path.join(self.venv("synapse", version), "bin", "python"), "-m",
                        "synapse._scripts.register_new_matrix_user", *argv[1:]]
        except Exception as e:  # noqa: BLE001
            return ("failed", str(e))
        attempts = 0
        while time.monotonic() < deadline:
            attempts += 1
            proc = self.spawn(job, argv, f"{job.name}.{attempts}")
            try:
                rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill(proc)
                break
            if rc == 0:
                return ("completed", f"{time.monotonic() - self.started:.1f} s, attempt {attempts}")
            if job.spec.get("restartPolicy") == "Never":
                break
            time.sleep(1)
        return ("failed", f"did not complete within {self.budget:.0f} s: {tail(self.scratch, f'{job.name}.{attempts}')}")

    # --- checks across components ---------------------------------------------------------

    def check(self, name, ok, detail):
        self.checks.append((name, ok, detail))

    def check_identity(self):
        """Each running program is the pod's rendered user and group, holds no capability, cannot
        gain one (no_new_privs), and cannot write the system's directories."""
        for pod in self.pods:
            if self.results[pod.name][0] != "ready":
                continue
            uid, gid, _ = pod.security()
            try:
                status = dict(line.split(":", 1) for line in open(f"/proc/{pod.proc.pid}/status").read().splitlines())
            except OSError as e:
                self.check(f"{pod.workload}: runs as {uid}:{gid} without capabilities", False, str(e))
                continue
            uids, gids = status["Uid"].split(), status["Gid"].split()
            ok = (set(uids) == {str(uid)} and set(gids) == {str(gid)} and int(status["CapEff"], 16) == 0
                  and int(status["CapBnd"], 16) == 0 and status.get("NoNewPrivs", "").strip() == "1")
            self.check(f"{pod.workload}: runs as {uid}:{gid} without capabilities", ok,
                       f"Uid {uids} Gid {gids} CapEff {status['CapEff'].strip()} CapBnd {status['CapBnd'].strip()}")
            # Outside its volumes the program's user owns nothing of the system it could change.
            r = self.as_pod(pod, ["sh", "-c", "for d in / /etc /usr /var/lib; do : > $d/.proving-write && echo $d; done; true"])
            self.check(f"{pod.workload}: cannot write /, /etc, /usr, /var/lib", r.stdout.strip() == "",
                       f"wrote into {r.stdout.split()}")

    def check_databases(self):
        """Every role the databases Job's SQL creates connects to its own database with its own
        generated credential, is no superuser, is refused with a wrong password and cannot open
        another application's database."""
        for job in self.jobs:
            if job.adapter() != "postgres" or self.results.get(job.name, ("",))[0] != "completed":
                continue
            # The SQL the Job ran: the ConfigMaps it mounts.
            names = [v["configMap"]["name"] for v in job.spec.get("volumes", []) or [] if "configMap" in v]
            sql = "\n".join(v for n in names for v in self.configmaps.get(n, {}).values())
            host = re.search(r"-h\s+(\S+)", " ".join(self.argv(job)))
            port = re.search(r"-p\s+(\d+)", " ".join(self.argv(job)))
            host, port = host.group(1), port.group(1)
            server = next((p for p in self.pods for svc in self.services_of(p) if svc["metadata"]["name"] == host.split(".")[0]), None)
            roles = re.findall(r"\\getenv app_password (\w+)\s*\n\s*SELECT 'CREATE ROLE (\w+) LOGIN'", sql)
            databases = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql))
            if not roles:
                self.check(f"{job.name}: roles", False, "no role found in the Job's SQL")
            for var, role in roles:
                password = job.env.get(var) or ""
                # From where the application holding the role's credential stands.
                client = self.client_as(self.wearing(server, int(port), self.secret_of(job, var)) if server else job.labels)
                own = [d for d, o in databases.items() if o == role]
                if not own:
                    self.check(f"database of {role}", False, "the SQL creates no database owned by it")
                    continue
                q = ["psql", "-X", "-At", "-h", host, "-p", port, "-U", role, "-d", own[0], "-c",
                     "SELECT current_user || ' ' || rolsuper FROM pg_roles WHERE rolname = current_user"]
                r = self.as_pod(client, q, env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
                self.check(f"postgresql: {role} opens {own[0]} with its credential, no superuser",
                           r.returncode == 0 and r.stdout.strip() == f"{role} false", (r.stdout + r.stderr).strip()[-200:])
                r = self.as_pod(client, q, env={"PGPASSWORD": password + "x", "PGCONNECT_TIMEOUT": "5"})
                self.check(f"postgresql: {role} refused with a wrong password",
                           r.returncode != 0 and "password authentication failed" in r.stderr, r.stderr.strip()[-200:])
                others = [d for d, o in databases.items() if o != role]
                if others:
                    q2 = [others[0] if i == q.index("-d") + 1 else a for i, a in enumerate(q)]
                    r = self.as_pod(client, q2, env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
                    self.check(f"postgresql: {role} cannot open {others[0]}",
                               r.returncode != 0 and "permission denied" in r.stderr, r.stderr.strip()[-200:])

    def ready(self, adapter):
        """The ready pods of an adapter, each with its Service's name and port (the address a
        client in the workplace uses)."""
        for pod in self.pods:
            if pod.adapter() != adapter or self.results[pod.name][0] != "ready":
                continue
            svc = next(self.services_of(pod), None)
            if svc is None:
                self.check(f"{pod.workload}: a Service selects it", False, "no Service selects the pod")
                continue
            yield pod, svc["metadata"]["name"], str(svc["spec"]["ports"][0]["port"])

    def check_mysql(self):
        for pod, host, port in self.ready("mariadb"):
            user, db = pod.env.get("MYSQL_USER"), pod.env.get("MYSQL_DATABASE")
            client = self.client_as(self.wearing(pod, int(port), self.secret_of(pod, "MYSQL_PASSWORD")))
            base = ["mariadb", "--no-defaults", "-h", host, "-P", port, "-u", user, "-N", "-B", "--connect-timeout=5", db]
            r = self.as_pod(client, base + [f"-p{pod.env['MYSQL_PASSWORD']}", "-e", "SELECT DATABASE()"])
            self.check(f"{pod.workload}: {user} opens {db} with its credential",
                       r.returncode == 0 and r.stdout.strip() == db, (r.stdout + r.stderr).strip()[-200:])
            r = self.as_pod(client, base + [f"-p{pod.env['MYSQL_PASSWORD']}x", "-e", "SELECT 1"])
            self.check(f"{pod.workload}: {user} refused with a wrong password",
                       r.returncode != 0 and "Access denied" in r.stderr, r.stderr.strip()[-200:])

    def check_valkey(self):
        for pod, host, port in self.ready("valkey"):
            password = pod.env.get("VALKEY_PASSWORD", "")
            client = self.client_as(self.wearing(pod, int(port), self.secret_of(pod, "VALKEY_PASSWORD")))
            for what, auth, expected in (
                ("refuses a command without the password", [], "NOAUTH"),
                ("refuses a wrong password", ["-a", "not-" + password], "WRONGPASS"),
                ("accepts it with the rendered password", ["-a", password], "OK"),
            ):
                r = self.as_pod(client, ["redis-cli", "-h", host, "-p", port, "--no-auth-warning", *auth, "SET", "k", "v"])
                out = (r.stdout + r.stderr).strip()
                ok = out == "OK" if expected == "OK" else expected in out
                self.check(f"{pod.workload}: {what}", ok, out[-200:])

    def http(self, client, url, method="GET", body=None, headers=None):
        """One HTTP request from a client's namespace, as `nobody`; returns (status, body), the
        body being the Location of a redirection, which is not followed."""
        headers = headers or {"Content-Type": "application/json"}
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            "r = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=sys.argv[3].encode() or None,"
            " headers=json.loads(sys.argv[4]))\n"
            "class Stay(urllib.request.HTTPRedirectHandler):\n    def redirect_request(self, *a):\n        return None\n"
            "try:\n    x = urllib.request.build_opener(Stay).open(r, timeout=10); print(x.status); print(x.read().decode())\n"
            "except urllib.error.HTTPError as e:\n    print(e.code); print(e.headers.get('Location') or e.read().decode())\n"
        )
        # An https URL goes through the Ingress, whose certificate authority the client trusts.
        ca = {"SSL_CERT_FILE": self.ingress.ca} if url.startswith("https:") and self.ingress else {}
        r = self.as_pod(client, ["/usr/bin/python3", "-c", script, url, method, body or "", json.dumps(headers)], env=ca)
        status, _, text = r.stdout.partition("\n")
        return (int(status) if status.isdigit() else None), (text + r.stderr).strip()

    def job_databases(self):
        """{database: owner} from the SQL of the databases Job."""
        found = {}
        for job in self.jobs:
            names = [v["configMap"]["name"] for v in job.spec.get("volumes", []) or [] if "configMap" in v]
            sql = "\n".join(v for n in names for v in self.configmaps.get(n, {}).values())
            found.update(dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql)))
        return found

    def superuser(self, sql, db="postgres"):
        """One query as the PostgreSQL superuser the postgres pod renders, from the client."""
        pg = next(self.ready("postgres"), None)
        if pg is None:
            return None
        pod, host, port = pg
        client = self.client_as(self.wearing(pod, int(port), self.secret_of(pod, "POSTGRES_PASSWORD")))
        q = ["psql", "-X", "-At", "-F", " ", "-h", host, "-p", port, "-U", pod.env.get("POSTGRES_USER", "postgres"), "-d", db, "-c", sql]
        return self.as_pod(client, q, env={"PGPASSWORD": pod.env["POSTGRES_PASSWORD"], "PGCONNECT_TIMEOUT": "5"})

    def check_synapse(self):
        """Synapse answers over its Service; it runs on the rendered PostgreSQL database (C
        collation, its own role, no SQLite file anywhere in its volumes), cannot open another
        application's database with its credential, and refuses open registration."""
        for pod in self.pods:
            # The collation is checked even when Synapse did not start: Synapse refuses a
            # database of another collation (synapse/storage/engines/postgres.py:84-125).
            if pod.adapter() == "synapse" and getattr(pod, "config_path", None):
                db = (yaml.safe_load(open(pod.config_path)) or {}).get("database") or {}
                name = f"{pod.workload}: its database has LC_COLLATE and LC_CTYPE C"
                if db.get("name") != "psycopg2":
                    self.check(name, False, f"its database section is {db.get('name')}'s, not PostgreSQL's")
                    continue
                r = self.superuser(f"SELECT datcollate || ' ' || datctype FROM pg_database WHERE datname = '{db.get('args', {}).get('dbname')}'")
                self.check(name, r is not None and r.stdout.strip() == "C C", (r.stdout + r.stderr).strip()[-200:] if r else "no PostgreSQL")
        for pod, host, port in self.ready("synapse"):
            w = pod.workload
            client = self.client_as(self.wearing(pod, int(port)))
            status, text = self.http(client, f"http://{host}:{port}/_matrix/client/versions")
            self.check(f"{w}: /_matrix/client/versions answers over the Service {host}",
                       status == 200 and '"versions"' in text, f"{status}: {text[-200:]}")
            # Open registration: an account asked for without a token (the dummy stage, all
            # an open server needs) is refused (M_FORBIDDEN, "Registration has been disabled").
            body = '{"username": "proving", "password": "proving-Ground-1", "auth": {"type": "m.login.dummy"}}'
            status, text = self.http(client, f"http://{host}:{port}/_matrix/client/v3/register", "POST", body)
            self.check(f"{w}: refuses a registration without a token", status == 403 and "M_FORBIDDEN" in text,
                       f"{status}: {text[-200:]}")
            self.check_synapse_sso(pod, host, port, client)
            conf = yaml.safe_load(open(pod.config_path)) or {}
            db = conf.get("database") or {}
            args = db.get("args") or {}
            sqlite = []
            for dirpath, _, files in os.walk(pod.root):
                for f in files:
                    try:
                        with open(os.path.join(dirpath, f), "rb") as fh:
                            if fh.read(16) == b"SQLite format 3\0":
                                sqlite.append(os.path.join(dirpath, f))
                    except OSError:
                        pass
            r = self.superuser(f"SELECT DISTINCT usename || ' ' || datname FROM pg_stat_activity WHERE client_addr = '{pod.ip}'")
            seen = sorted(set(r.stdout.split("\n")) - {""}) if r is not None and r.returncode == 0 else []
            expected = f"{args.get('user')} {args.get('dbname')}"
            self.check(f"{w}: runs on the rendered PostgreSQL database, not SQLite",
                       db.get("name") == "psycopg2" and seen == [expected] and not sqlite,
                       f"database {db.get('name')}; its connections {seen} (expected [{expected!r}]); SQLite files {sqlite}")
            r = self.superuser(f"SELECT count(*) FROM pg_tables WHERE tableowner = '{args.get('user')}'", db=args.get("dbname") or "postgres")
            self.check(f"{w}: its schema is in its database, owned by its role",
                       r is not None and r.stdout.strip().isdigit() and int(r.stdout) > 0, (r.stdout + r.stderr).strip()[-200:] if r else "no PostgreSQL")
            # With its own credential (PGPASSWORD in its env) it cannot open the others' databases.
            others = [d for d, o in self.job_databases().items() if d != args.get("dbname")]
            for other in others:
                q = ["psql", "-X", "-At", "-h", str(args.get("host")), "-p", str(args.get("port", 5432)),
                     "-U", str(args.get("user")), "-d", other, "-c", "SELECT 1"]
                r = self.as_pod(pod, q, env={"PGCONNECT_TIMEOUT": "5"})
                self.check(f"{w}: cannot open the {other} database with its credential",
                           r.returncode != 0 and "permission denied" in r.stderr, (r.stdout + r.stderr).strip()[-200:])
            if not others:
                self.check(f"{w}: cannot open another database", False, "the databases Job creates no other database")

    def check_synapse_sso(self, pod, host, port, client):
        """Synapse offers its rendered OIDC provider at login, and sends a user to the issuer's
        authorization endpoint as the rendered client, with a callback address the rendered
        realm file allows for that client (Keycloak refuses any other)."""
        conf = yaml.safe_load(open(pod.config_path)) or {}
        for provider in conf.get("oidc_providers") or []:
            # Synapse names a provider `oidc-<idp_id>` (element-hq/synapse@v1.141.0:synapse/config/oidc.py:266).
            idp = "oidc-" + provider["idp_id"]
            status, text = self.http(client, f"http://{host}:{port}/_matrix/client/v3/login")
            offered = [i.get("id") for f in (json.loads(text).get("flows", []) if status == 200 else [])
                       for i in f.get("identity_providers", [])]
            self.check(f"{pod.workload}: offers the {idp} login", idp in offered, f"{status}: {text[-200:]}")
            back = conf.get("public_baseurl", "").rstrip("/") + "/"
            status, location = self.http(client, f"http://{host}:{port}/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl={urllib.parse.quote(back)}")
            if status == 302 and location.startswith(back):
                # Synapse first sends a request that did not come to its public address there,
                # for its cookie (element-hq/synapse@v1.141.0:synapse/rest/client/login.py:656-680): through the
                # Ingress.
                status, location = self.http(client, location)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
            allowed = [u for r in self.realms() for c in r.get("clients") or [] if c.get("clientId") == provider["client_id"]
                       for u in c.get("redirectUris") or []]
            callback = (q.get("redirect_uri") or [""])[0]
            self.check(f"{pod.workload}: sends a login to {provider['issuer']} as client {provider['client_id']}, "
                       "to a callback the realm allows",
                       status == 302 and location.startswith(provider["issuer"] + "/") and q.get("client_id") == [provider["client_id"]]
                       and any(callback == u or (u.endswith("*") and callback.startswith(u[:-1])) for u in allowed),
                       f"{status}: {location[:300]}; the realm allows {allowed}")

    def realms(self):
        """The realm files the rendered Keycloak pods import."""
        found = []
        for d in self.docs:
            if d.get("kind") in ("StatefulSet", "Deployment") and image_repo(d["spec"]["template"]["spec"]["containers"][0].get("image", "")) == "quay.io/keycloak/keycloak":
                spec = d["spec"]["template"]["spec"]
                volumes = {v["name"]: v for v in spec.get("volumes") or []}
                for m in spec["containers"][0].get("volumeMounts") or []:
                    if m["mountPath"].startswith("/opt/keycloak/data/import/") and m.get("subPath") and "configMap" in volumes.get(m["name"], {}):
                        found.append(json.loads(self.configmaps[volumes[m["name"]]["configMap"]["name"]][m["subPath"]]))
        return found

    def check_keycloak(self):
        """Keycloak serves the imported realm's discovery document over its Service with the
        rendered hostname as issuer; every client of the rendered realm file exists (read with
        the bootstrap admin's token); the bootstrap admin is refused with a wrong password."""
        for pod, host, port in self.ready("keycloak"):
            base = f"http://{host}:{port}"
            client = self.client_as(self.wearing(pod, int(port)))
            mounts = {m["mountPath"]: m for m in pod.container.get("volumeMounts") or []}
            volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
            realms = [json.loads(self.configmaps[volumes[m["name"]]["configMap"]["name"]][m["subPath"]])
                      for path, m in mounts.items() if path.startswith("/opt/keycloak/data/import/") and m.get("subPath")]
            if not realms:
                self.check("keycloak: a realm file is imported", False, "no file mounted in /opt/keycloak/data/import")
            for realm in realms:
                name = realm["realm"]
                status, text = self.http(client, f"{base}/realms/{name}/.well-known/openid-configuration")
                issuer = pod.env.get("KC_HOSTNAME", "").rstrip("/") + f"/realms/{name}"
                found = json.loads(text).get("issuer") if status == 200 else None
                self.check(f"keycloak: the {name} realm's discovery answers over the Service {host}, issuer {issuer}",
                           found == issuer, f"{status}: issuer {found}: {text[-200:]}")
                form = {"Content-Type": "application/x-www-form-urlencoded"}
                user, password = pod.env.get("KC_BOOTSTRAP_ADMIN_USERNAME", ""), pod.env.get("KC_BOOTSTRAP_ADMIN_PASSWORD", "")
                token_url = f"{base}/realms/master/protocol/openid-connect/token"
                grant = {"grant_type": "password", "client_id": "admin-cli", "username": user}
                status, text = self.http(client, token_url, "POST", urllib.parse.urlencode({**grant, "password": password + "x"}), form)
                self.check("keycloak: the bootstrap admin is refused with a wrong password",
                           status == 401 and "invalid_grant" in text, f"{status}: {text[-200:]}")
                status, text = self.http(client, token_url, "POST", urllib.parse.urlencode({**grant, "password": password}), form)
                token = json.loads(text).get("access_token") if status == 200 else None
                status, text = self.http(client, f"{base}/admin/realms/{name}/clients", headers={"Authorization": f"Bearer {token}"})
                present = {c.get("clientId") for c in json.loads(text)} if status == 200 else set()
                wanted = {c["clientId"] for c in realm.get("clients") or []}
                self.check(f"keycloak: the {name} realm has the clients {', '.join(sorted(wanted))}",
                           bool(wanted) and wanted <= present, f"{status}: missing {sorted(wanted - present)}: {text[-200:]}")
            break  # the replicas share the database: one answers for all

    REACH = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
             "    print('connected')\nexcept OSError as e:\n    print(type(e).__name__, e)\n")

    def check_isolation(self):
        """The NetworkPolicies, enforced (police), against the running programs: each port of a
        ready pod admits the workplace's pods its policies name; a tenant, in a namespace of its
        own and wearing those very labels, cannot reach it, nor read the data with the
        credential the workplace's client reads it with; no ready pod reaches an address outside
        the cluster its egress policy does not list, nor a listed one on another port, while it
        reaches the listed one (the site's relay). Listeners answer a client of the tenant's
        namespace (no policy there), so a refusal is the policy's."""
        probes = []  # (check name, from, argv, env, passes(exit code, output))

        def tcp(name, src, host, port, should):
            probes.append((name, src, ["/usr/bin/python3", "-c", self.REACH, host, str(port), "2"], {},
                           lambda rc, out: (out.splitlines()[-1:] == ["connected"]) == should))

        seen = set()
        for pod in self.pods:
            if self.results[pod.name][0] != "ready" or pod.workload in seen:
                continue
            seen.add(pod.workload)
            svcs = list(self.services_of(pod))
            for cport in sorted({c["containerPort"] for c in pod.container.get("ports") or [] if c.get("protocol", "TCP") == "TCP"}):
                svc = next(((s["metadata"]["name"], sp["port"]) for s in svcs for sp in s["spec"].get("ports") or []
                            if self.port(pod, sp.get("targetPort", sp["port"])) == cport), None)
                host, port = (f"{svc[0]}.{self.namespace}.svc.cluster.local", svc[1]) if svc else (pod.ip, cport)
                labels = self.wearing(pod, cport)
                who = labels.get("app.kubernetes.io/name") or ",".join(f"{k}={v}" for k, v in labels.items())
                tcp(f"isolation: {pod.workload} port {cport} admits the workplace's {who} pods", self.client_as(labels), host, port, True)
                tcp(f"isolation: {pod.workload} port {cport} unreachable from another namespace",
                    self.client_as(labels, TENANT_NAMESPACE), host, port, False)
                # The data, read with the server's own credential by its real client: from the
                # workplace (the credential is right), not from the tenant holding it too.
                read = self.reader(pod, host, port)
                if read is not None:
                    argv, env = read
                    for src, should, name in ((self.client_as(labels), True, f"the workplace's {who} pods read it with its credential"),
                                              (self.client_as(labels, TENANT_NAMESPACE), False, "a tenant holding its credential cannot read it")):
                        probes.append((f"isolation: {pod.workload}: {name}", src, argv, env,
                                       lambda rc, out, should=should: (rc == 0) == should))
            for addr, port, what in self.outside:
                name = {"listed": f"reaches {addr}:{port}, which its egress policy lists",
                        "unlisted port": f"cannot reach {addr} on port {port}, which its egress policy does not list",
                        "unlisted address": f"cannot reach {addr}:{port}, an address its egress policy does not list"}[what]
                tcp(f"isolation: {pod.workload} {name}", pod, addr, port, what == "listed")
        # A pod of the tenant's namespace, listening, as nobody.
        sink = self.client_as({"app.kubernetes.io/name": "tenant-listener"}, TENANT_NAMESPACE)
        self.listeners.append(subprocess.Popen(
            ["ip", "netns", "exec", sink.ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "/usr/bin/python3", "-c", LISTEN, f"{sink.ip}:{TENANT_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for w in sorted(seen):
            pod = next(p for p in self.pods if p.workload == w and self.results[p.name][0] == "ready")
            tcp(f"isolation: {w} cannot reach a pod of another namespace", pod, sink.ip, TENANT_PORT, False)
        # A pod started in the workplace's namespace without the workplace's labels: only the
        # namespace's isolation policy selects it, so it sends nothing, not even to the relay
        # the workplace's own pods reach.
        intruder = self.client_as({"app.kubernetes.io/name": "intruder"})
        for addr, port, what in self.outside:
            if what == "listed":
                tcp(f"isolation: an unlabelled pod of the workplace's namespace cannot reach {addr}:{port}",
                    intruder, addr, port, False)
        tcp("isolation: an unlabelled pod of the workplace's namespace cannot reach a pod of another namespace",
            intruder, sink.ip, TENANT_PORT, False)
        tenant = self.client_as({}, TENANT_NAMESPACE)
        for addr, port, _ in self.outside:
            tcp(f"isolation: the listener at {addr}:{port} answers another namespace", tenant, addr, port, True)
        tcp("isolation: the listening pod of another namespace answers its own namespace", tenant, sink.ip, TENANT_PORT, True)
        time.sleep(0.3)  # the tenant pod's listener binds
        answers = [None] * len(probes)

        # At most ISOLATION_PARALLEL probes at once, each given 60 s to end: the verdict is
        # the probe's own connection timeout (2 or 3 s); the outer limit only catches a hung
        # client. With SeaweedFS the probes passed 60, and all at once on two cores loaded by
        # other builds (load average 19) some did not even start their interpreter in 15 s.
        gate = threading.Semaphore(ISOLATION_PARALLEL)

        def one(i, probe):
            with gate:
                try:
                    r = self.as_pod(probe[1], probe[2], timeout=60, env=probe[3])
                    answers[i] = (r.returncode, (r.stdout + r.stderr).strip())
                except subprocess.TimeoutExpired:
                    answers[i] = (None, "no answer within 60 s")

        threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(probes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (name, src, argv, _, passes), (rc, out) in zip(probes, answers):
            where = f"from {src.name} ({self.namespace_of(src)}, {src.ip}): {argv[-1] if argv[0] != '/usr/bin/python3' else ':'.join(argv[-3:-1])}"
            self.check(name, rc is not None and passes(rc, out), f"{where}: exit {rc}: {out[-200:]}")

    def reader(self, pod, host, port):
        """The server's real client reading its data with the server's own credential (the
        superuser's, root's, the password), bounded to 3 s; None for other servers."""
        kind, env = pod.adapter(), pod.env
        if kind == "postgres":
            return (["psql", "-X", "-At", "-h", host, "-p", str(port), "-U", env.get("POSTGRES_USER", "postgres"), "-d", "postgres",
                     "-c", "SELECT count(*) FROM pg_database"], {"PGPASSWORD": env["POSTGRES_PASSWORD"], "PGCONNECT_TIMEOUT": "3"})
        if kind == "mariadb":
            return (["mariadb", "--no-defaults", "-h", host, "-P", str(port), "-u", "root", f"-p{env['MYSQL_ROOT_PASSWORD']}",
                     "--connect-timeout=3", "-N", "-B", "-e", "SHOW DATABASES"], {})
        if kind == "valkey":
            # The password when the server asks for one (the mutants' Valkey asks none).
            auth = ["-a", env.get("VALKEY_PASSWORD", "")] if "--requirepass" in self.argv(pod) else []
            return (["timeout", "3", "redis-cli", "-h", host, "-p", str(port), "--no-auth-warning", *auth, "--scan"], {})
        return None

    def check_mail(self):
        """eXo's mail, as rendered, under the enforced policies: from a client wearing eXo's pod
        labels, an SMTP client given eXo's EXO_MAIL_SMTP_HOST, _PORT, _STARTTLS and EXO_MAIL_FROM
        (its ConfigMap) submits a message, and the site's relay (the outside host at that
        address, LISTEN) receives it from that sender. eXo does not run here (NOT_HERE): its
        JavaMail is played by Python's smtplib. A workplace without spec.mail renders no relay:
        nothing is checked."""
        exo = next((d for d in self.docs if d.get("kind") == "StatefulSet" and d["metadata"]["name"] == "exo"), None)
        config = self.configmaps.get("exo-config") or {}
        if exo is None or "EXO_MAIL_SMTP_HOST" not in config:
            log("mail: not checked: " + ("no eXo rendered" if exo is None else "eXo is given no relay (no spec.mail)"))
            return
        host, port = config["EXO_MAIL_SMTP_HOST"], config.get("EXO_MAIL_SMTP_PORT", "25")
        sender, rcpt = config.get("EXO_MAIL_FROM", ""), "officer@example.org"
        name = f"mail: eXo's rendered settings submit a message to the site's relay at {host}:{port} as {sender}"
        # The rendered relay must be a destination the egress policies list on that port (the
        # mutants' run opens every address and port, so reaching it alone proves nothing there).
        listed = any(a == host and str(p) == port for a, p, what in self.outside or [] if what == "listed")
        if self.relay_log is None or not listed:
            self.check(name, False, f"{host}:{port} is no destination the egress policies list: {self.outside}")
            return
        client = self.client_as(exo["spec"]["template"]["metadata"]["labels"])
        r = self.as_pod(client, ["/usr/bin/python3", "-c", SEND_MAIL, host, port,
                                 config.get("EXO_MAIL_SMTP_STARTTLS", "false"), sender, rcpt], timeout=60)
        received = open(self.relay_log).read().splitlines() if os.path.exists(self.relay_log) else []
        want = f"to={host}:{port} from={sender} rcpt={rcpt}"
        self.check(name, r.returncode == 0 and want in received,
                   f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[-200:]}; the relay received {received[-3:]}")

    def check_matrix_admin(self):
        """The Job creating the account eXo acts as on Matrix (issue 20: Meeds-io/matrix README
        `register_new_matrix_user -a`) made it against the running Synapse: the account logs in
        with the password the Job was given, and Synapse's admin API answers it as an admin.
        Not proven here: eXo's JWT login, since the operator writes Synapse's `jwt_config` into
        the credential's Secret when it creates it, and this harness reads only the stream."""
        for job in self.jobs:
            if not job.workload.startswith("synapse-admin-"):
                continue
            name = f"{job.workload}: created a Synapse admin account that logs in"
            argv = job.container.get("command") or []
            arg = lambda flag: argv[argv.index(flag) + 1] if flag in argv[:-1] else None  # noqa: E731
            user, password_file = arg("-u"), arg("--password-file") or ""
            mount = next((m for m in job.container.get("volumeMounts") or []
                          if password_file.startswith(m["mountPath"].rstrip("/") + "/")), None)
            volume = next((v for v in job.spec.get("volumes") or [] if mount and v["name"] == mount["name"]), {})
            secret = volume.get("secret") or {}
            key = next((i["key"] for i in secret.get("items") or []
                        if password_file.endswith("/" + i["path"])), None)
            state = self.results.get(job.name, ("failed", "not run"))
            ready = next(self.ready("synapse"), None)
            if not (user and secret.get("secretName") and key) or ready is None or state[0] != "completed":
                self.check(name, False, f"the Job {state[0]} ({state[1][-200:]}); user {user!r}, "
                           f"password from {secret.get('secretName')}/{key}; Synapse ready: {ready is not None}")
                continue
            pod, host, port = ready
            server_name = (yaml.safe_load(open(pod.config_path)) or {}).get("server_name")
            body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                               "password": self.secret(secret["secretName"], key)})
            # From where the Job stands: its own labels, under the policies that select it.
            client = self.client_as(job.labels)
            status, text = self.http(client, f"http://{host}:{port}/_matrix/client/v3/login", "POST", body)
            token = json.loads(text).get("access_token") if status == 200 else None
            admin_status, admin_text = self.http(client, f"http://{host}:{port}/_synapse/admin/v2/users/@{user}:{server_name}",
                                                 headers={"Authorization": f"Bearer {token}"})
            admin = admin_status == 200 and json.loads(admin_text).get("admin") is True
            self.check(name, admin, f"login {status}: {text[-200:]}; admin API {admin_status}: {admin_text[-200:]}")

    def check_seaweedfs(self):
        """The masters elect exactly one leader, which every master names (each master's
        /cluster/status, asked from the node as the kubelet probes: weed/server/
        master_server_handlers_admin.go); the S3 gateway refuses an anonymous request and one
        signed with a wrong secret, and accepts one signed (AWS Signature Version 4) with the
        credentials rendered into the filer's env, from a client standing as the workplace's
        pod the filer's policy admits."""
        masters = [p for p in self.pods if p.adapter() == "seaweedfs" and (p.container.get("args") or [""])[0] == "master"]
        if masters:
            states, why = {}, []
            for pod in masters:
                if self.results[pod.name][0] != "ready":
                    why.append(f"{pod.name} not ready")
                    continue
                try:
                    with urllib.request.urlopen(f"http://{pod.ip}:{self.port(pod, 'http')}/cluster/status", timeout=5) as r:
                        states[pod.name] = json.loads(r.read())
                except Exception as e:  # noqa: BLE001 - the answer is the check's detail
                    why.append(f"{pod.name}: {e}")
            leaders = sorted(n for n, st in states.items() if st.get("IsLeader"))
            named = {st.get("Leader") for st in states.values()}
            ok = not why and len(states) == len(masters) and len(leaders) == 1 and len(named) == 1
            self.check(f"{masters[0].workload}: the {len(masters)} masters elect exactly one leader, named by each", ok,
                       "; ".join(why + [f"{n}: IsLeader {st.get('IsLeader')} Leader {st.get('Leader')}" for n, st in sorted(states.items())]))
        for pod, _, _ in self.ready("seaweedfs"):
            if "-s3" not in (pod.container.get("args") or []):
                continue
            port = self.port(pod, "s3")
            svc = next((s["metadata"]["name"] for s in self.services_of(pod)), pod.workload)
            url = f"http://{svc}.{self.namespace}.svc.cluster.local:{port}/"
            key, secret = pod.env.get("AWS_ACCESS_KEY_ID", ""), pod.env.get("AWS_SECRET_ACCESS_KEY", "")
            client = self.client_as(self.wearing(pod, port))
            status, text = self.http(client, url, headers={})
            self.check(f"{pod.workload}: S3 refuses an anonymous request", status == 403 and "AccessDenied" in text, f"{status}: {text[-200:]}")
            status, text = self.http(client, url, headers=sigv4("GET", url, key, "not-" + secret))
            self.check(f"{pod.workload}: S3 refuses a request signed with a wrong secret", status == 403, f"{status}: {text[-200:]}")
            status, text = self.http(client, url, headers=sigv4("GET", url, key, secret))
            self.check(f"{pod.workload}: S3 accepts a request signed with the rendered credentials",
                       status == 200 and "ListAllMyBucketsResult" in text, f"{status}: {text[-200:]}")
            self.s3 = (pod, client, url, key, secret)

    def run_cron(self, cron, deadline):
        """One run of a CronJob's Job: its pod's init containers in order, then its container,
        each to completion, as written. A failure is tried again as Kubernetes does: under
        `restartPolicy: Never` the Job starts a new pod (empty emptyDirs, every container
        again) until more pods failed than its backoffLimit; under `OnFailure` the kubelet
        restarts the failed container in place until the restarts reach the backoffLimit
        (kubernetes pkg/controller/job/job_controller.go, pastBackoffLimitOnFailure). Here
        after RESTART_SECONDS, where the Job controller and the kubelet wait 10 s, then twice as
        long each time."""
        steps, failures = [], 0
        never = cron.spec.get("restartPolicy") == "Never"
        containers = (cron.spec.get("initContainers") or []) + cron.spec["containers"]
        try:
            while True:
                failed = None
                for c in containers:
                    while True:
                        view = cron.init_view(c)
                        view.ns, view.ip, view.kind = cron.ns, cron.ip, "Job"
                        self.prepare(view)
                        proc = self.spawn(view, self.argv(view), view.name)
                        try:
                            rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
                        except subprocess.TimeoutExpired:
                            kill(proc)
                            rc = f"no end within {BACKUP_SECONDS} s"
                        steps.append(f"{c['name']} {rc}")
                        if rc == 0:
                            break
                        failures += 1
                        why = f"{c['name']}: exit {rc}: {tail(self.scratch, view.name)}"
                        again = isinstance(rc, int) and time.monotonic() + RESTART_SECONDS < deadline and (
                            failures <= cron.backoff_limit if never else failures < cron.backoff_limit)
                        if not again:
                            raise RuntimeError(why)
                        log(f"{cron.name}: {c['name']} exited {rc}, run again ({'a new pod' if never else 'restarted'}): {why[-200:]}")
                        time.sleep(RESTART_SECONDS)
                        if never:
                            failed = why
                            break
                    if failed:
                        break
                if not failed:
                    break
                # A new pod: its emptyDir volumes start empty.
                for v in cron.spec.get("volumes") or []:
                    if "emptyDir" in v:
                        shutil.rmtree(os.path.join(self.scratch, cron.name, "vol", v["name"]), ignore_errors=True)
            self.results[cron.name] = ("completed", f"{time.monotonic() - self.started:.1f} s: " + ", ".join(steps))
        except Exception as e:  # noqa: BLE001 - reported per CronJob
            self.results[cron.name] = ("failed", str(e))

    def check_backups(self):
        """Each backup CronJob, run once as its Job would be: its init containers (the dump by
        the database's own client) then its container (`weed filer.copy` to the filer), each
        command as written, in the Job pod's namespace, under its identity and policies. The
        dump is then in the bucket, listed through S3 with the rendered credentials, and not
        readable anonymously."""
        # Both at once, within BACKUP_SECONDS: a dump and its upload take a second here, and
        # an upload the policies drop would otherwise wait out the connections' timeouts.
        deadline = time.monotonic() + BACKUP_SECONDS
        runs = [threading.Thread(target=self.run_cron, args=(cron, deadline)) for cron in self.crons]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
        for cron in self.crons:
            command = " ".join(cron.container.get("command") or [])
            bucket = re.search(r"/buckets/([^/\s]+)/", command)
            name = f"{cron.workload}: its commands, run as written, put a dump into the bucket {bucket.group(1) if bucket else '?'}"
            s3 = getattr(self, "s3", None)
            completed = self.results[cron.name][0] == "completed"
            found = []
            if bucket and s3 is not None:
                _, client, url, key, secret = s3
                listing = f"{url}{bucket.group(1)}?list-type=2"
                status, text = self.http(client, listing, headers=sigv4("GET", listing, key, secret))
                # ListObjectsV2: one <Contents> per object, with its <Key> and <Size>.
                found = [(k, int(z)) for block in re.findall(r"<Contents>(.*?)</Contents>", text, re.S)
                         for k, z in re.findall(r"<Key>([^<]*dump\.sql)</Key>.*?<Size>(\d+)</Size>", block, re.S)]
                found = [(k, z) for k, z in found if z > 0]
                # A Job that completes without its dump in the bucket is a lost backup nobody
                # sees (filer.copy exits 0 when its upload fails): never.
                self.check(f"{cron.workload}: its Job completes only with its dump in the bucket",
                           not completed or bool(found),
                           f"completed with {found or 'nothing'} in {bucket.group(1)}: {self.results[cron.name][1][-200:]}")
            if not completed or not bucket or s3 is None:
                self.check(name, False, f"{self.results[cron.name][1][-300:]}; S3 checked: {s3 is not None}")
                continue
            wanted = bucket.group(1)
            self.check(name, status == 200 and bool(found), f"{status}: {found or text[-300:]}")
            if found:
                self.dumps = getattr(self, "dumps", []) + [(wanted, found[0][0])]
                obj = f"{url}{wanted}/{found[0][0]}"
                status, text = self.http(client, obj, headers={})
                self.check(f"{cron.workload}: the dump in {wanted} is not readable anonymously", status == 403, f"{status}: {text[-200:]}")
                status, text = self.http(client, obj, headers=sigv4("GET", obj, key, secret))
                self.check(f"{cron.workload}: the dump in {wanted} reads back with the rendered credentials, a database dump",
                           status == 200 and "dump" in text[:200].lower(), f"{status}: {text[:200]}")

    def services_of(self, pod):
        for svc in self.services:
            sel = svc["spec"].get("selector") or {}
            if sel and all(pod.labels.get(k) == v for k, v in sel.items()) and svc["spec"].get("clusterIP") != "None":
                yield svc

    # --- output and cleanup ---------------------------------------------------------------

    def report(self):
        ran = [j for j in self.jobs if j.adapter() and not j.skip_reason] + self.crons
        print(f"proving ground: {len(self.pods) + len(ran)} of the {len(self.pods) + len(self.skipped) + len(self.jobs) + len(self.crons)} rendered pods run here")
        failed = False
        for pod in self.pods + ran:
            state, detail = self.results.get(pod.name, ("failed", "not started"))
            failed |= state == "failed"
            label = {"ready": "ran and ready", "completed": "ran and completed"}.get(state, "ran and FAILED")
            label += " (a CronJob, run once)" if pod.kind == "CronJob" else ""
            print(f"  {pod.name:32} {label} ({detail}) [{pod.image} -> {stand_in(pod.adapter(), pod.image)}]")
        for pod in self.skipped:
            reason = pod.skip_reason or next((r for k, r in NOT_HERE.items() if k in pod.image),
                                             f"no local stand-in for {pod.image}")
            if pod.kind == "CronJob":
                reason = f"{reason}; a CronJob (runs later, with the object store)"
            print(f"  {pod.name:32} not runnable here ({reason})")
        if self.ingress is not None:
            played = ", ".join(sorted(self.ingress.played))
            print(f"  {'ingress':32} played by the harness (TLS for {len(self.ingress.hosts)} hosts, a certificate authority of the run)"
                  + (f"; the OIDC issuer at {played} answered by it: Keycloak does not run here" if played else ""))
        print("checks:")
        for name, ok, detail in self.checks:
            failed |= not ok
            print(f"  {'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
        print(f"start to all ready: {self.all_ready:.1f} s; whole run {time.monotonic() - self.started:.1f} s", flush=True)
        return 1 if failed else 0

    def down(self):
        if self.ingress is not None:
            self.ingress.close()
        if self.auditor_proc is not None:
            kill(self.auditor_proc, signal.SIGKILL)
        for proc in self.listeners:
            kill(proc, signal.SIGKILL)
        # Every pod is stopped at once, as a namespace's deletion does, each with its image's
        # stop signal (STOP_SIGNALS): PostgreSQL's on SIGTERM would wait for its clients.
        for pod in self.pods:
            if pod.proc is not None:
                try:
                    os.killpg(pod.proc.pid, STOP_SIGNALS.get(pod.adapter(), signal.SIGTERM))
                except ProcessLookupError:
                    pass
        # Their data is thrown away: after 2 s (PostgreSQL's shutdown checkpoint takes longer on
        # a busy disk) what is left is killed, with every process left in the namespaces.
        grace = time.monotonic() + 2
        for pod in self.pods:
            if pod.proc is not None:
                try:
                    pod.proc.wait(timeout=max(0.01, grace - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill(pod.proc, signal.SIGKILL)
        killed = []
        for ns in self.netns:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                except ProcessLookupError:
                    pass
        # Gone before their volumes are unmounted (a process still holding a file in a claim's
        # tmpfs would make it busy): up to 5 s.
        gone = time.monotonic() + 5
        while killed and time.monotonic() < gone:
            killed = [pid for pid in killed if os.path.exists(f"/proc/{pid}")]
            time.sleep(0.05)
        for proc in [subprocess.Popen(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL) for ns in self.netns]:
            proc.wait()
        for ns in self.netns:
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        try:
            os.rmdir("/etc/netns")  # only when no other namespace keeps files there
        except OSError:
            pass
        # The filer's unix sockets: the harness gives no pod its own /tmp (the processes share
        # the machine's), so what the filer left there goes with the run.
        for sock in glob.glob("/tmp/seaweedfs-*.sock"):
            if any(p.adapter() == "seaweedfs" and p.proc is not None for p in self.pods):
                os.unlink(sock)
        # Every mount undone, each tried even when one before failed; one still busy is
        # detached (`umount -l`: gone once its last user is), and the scratch directory kept.
        stuck = []
        for path in reversed(self.bound):
            if subprocess.run(["umount", path], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", path], capture_output=True)
                stuck.append(path)
        if stuck:
            log(f"could not unmount {', '.join(stuck)} (detached instead): {self.scratch} kept")
            return
        if self.keep:
            log(f"kept {self.scratch}")
        else:
            # Removed in the background: deleting the databases' files takes seconds on a disk
            # mounted with online discard, and nothing waits for it.
            subprocess.Popen(["rm", "-rf", "--one-file-system", self.scratch], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stand_in(adapter, image=""):
    if adapter == "postgres":
        return "PostgreSQL " + re.search(r"\d+\.\d+", run([pg_bin("postgres"), "--version"]).stdout).group(0)
    if adapter == "mariadb":
        return "MariaDB " + re.search(r"\d+\.\d+\.\d+", run(["/usr/sbin/mariadbd", "--version"]).stdout).group(0)
    if adapter == "valkey":
        v = re.search(r"v=(\S+)", run(["redis-server", "--version"]).stdout)
        return "Redis " + (v.group(1) if v else "?")
    if adapter == "keycloak":
        return "Keycloak distribution (Maven Central), " + run(["java", "-version"]).stderr.splitlines()[0]
    if adapter == "seaweedfs":
        cache = os.environ.get("HEXAGONE_CACHE") or os.path.expanduser("~/.cache/hexagone")
        found = sorted(glob.glob(os.path.join(cache, "seaweedfs", image.rsplit(":", 1)[-1] + "-go*", "VERSION")))
        return open(found[-1]).read().strip() if found else "?"
    if adapter == "synapse":
        cache = os.environ.get("HEXAGONE_CACHE") or os.path.expanduser("~/.cache/hexagone")
        found = glob.glob(os.path.join(cache, "synapse", "*", "venv", "lib", "python3*", "site-packages", "matrix_synapse-*.dist-info"))
        return "Synapse " + ", ".join(sorted(re.search(r"matrix_synapse-(.+)\.dist-info", f).group(1) for f in found)) + " (its Python package)"
    return "?"


def sigv4(method, url, key, secret, body=b"", region="us-east-1"):
    """The headers of an AWS Signature Version 4 request (the S3 API reference, "Authenticating
    Requests: Using the Authorization Header"), the payload's SHA-256 signed."""
    u = urllib.parse.urlsplit(url)
    amzdate = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    day, payload = amzdate[:8], hashlib.sha256(body).hexdigest()
    q = lambda v: urllib.parse.quote(v, safe="-_.~")  # noqa: E731
    query = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True)))
    headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amzdate}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, urllib.parse.quote(u.path or "/", safe="/-_.~"), query,
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}",
            "x-amz-content-sha256": payload, "x-amz-date": amzdate}


def quantity_bytes(q):
    """A Kubernetes storage quantity ("200Gi", "2Ti", "500M", "1e9") in bytes
    (k8s.io/apimachinery pkg/api/resource/quantity.go: binary suffixes Ki..Ei, decimal k..E)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:[eE]\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?", str(q))
    if not m:
        fail(f"storage quantity {q!r} not understood")
    binary = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
    decimal = {"k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
    unit = m.group(2)
    factor = 1024 ** binary[unit] if unit in binary else 1000 ** decimal.get(unit, 0)
    return int(float(m.group(1)) * factor)


def selects(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against labels; {} selects all."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values or key not in labels,
              "Exists": key in labels, "DoesNotExist": key not in labels}.get(op)
        if ok is None:
            raise RuntimeError(f"label selector operator {op}: not translated")
        if not ok:
            return False
    return True


def policy_types(spec):
    """A NetworkPolicy's policyTypes; when absent, Ingress always and Egress when the policy has
    egress rules (network-policies.md, "policyTypes")."""
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))


def outside_destinations(docs):
    """Where the egress checks aim, outside the cluster: [(address, port, what)], `what` being
    "listed" (an address an egress ipBlock lists, its first host, on a port the rule lists, 25
    when it lists none), "unlisted port" (that address on a port no rule lists) or "unlisted
    address" (one address no rule lists, on the first listed port). Blocks wider than /16 are
    not aimed at (0.0.0.0/0 lists everything)."""
    import ipaddress

    found = []
    for d in docs:
        if d.get("kind") != "NetworkPolicy" or "Egress" not in policy_types(d["spec"]):
            continue
        for rule in d["spec"].get("egress") or []:
            ports = [p["port"] for p in rule.get("ports") or [] if p.get("protocol", "TCP") == "TCP" and isinstance(p.get("port"), int)]
            for peer in rule.get("to") or []:
                cidr = (peer.get("ipBlock") or {}).get("cidr", "")
                if cidr and ":" not in cidr and ipaddress.ip_network(cidr).prefixlen >= 16:
                    net = ipaddress.ip_network(cidr)
                    addr = str(net.network_address if net.prefixlen == 32 else next(net.hosts()))
                    found += [(addr, p, "listed") for p in ports or [25]]
                    if ports:
                        found.append((addr, UNLISTED_PORT, "unlisted port"))
    listed_ports = sorted({p for _, p, w in found if w == "listed"})
    found.append((UNLISTED_ADDRESS, (listed_ports or [25])[0], "unlisted address"))
    return found


def expand(s, env):
    """Kubernetes' $(VAR) expansion: a known variable is replaced, $$ escapes, an unknown one stays."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def sql_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fail(msg):
    raise RuntimeError(msg)


def tail(scratch, name):
    try:
        return open(os.path.join(scratch, f"{name}.log"), errors="replace").read().strip()[-300:]
    except OSError:
        return "(no log)"


def kill(proc, sig=signal.SIGTERM):
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def mutants(docs):
    """The rendering made wrong in ways the checks must catch: eXo's mail sent to a port of the
    relay its egress does not open, the filer without the auditor's token, Valkey without --requirepass, an
    application role made superuser, Synapse on SQLite with open registration, the realm's
    client for Synapse allowing another callback, the namespace's isolation policy dropped, the
    ingress policies' pod peers made
    cluster-wide, the egress policies opened to every namespace and every outside address.
    Returns (mutated docs, names of the checks
    that must fail)."""
    import copy

    docs = copy.deepcopy(docs)
    must_fail = set()
    # The filer without the auditor's token: its notifications are refused (401), nothing is
    # recorded.
    for d in docs:
        if d.get("kind") == "StatefulSet" or d.get("kind") == "Deployment":
            c = d["spec"]["template"]["spec"]["containers"][0]
            env = c.get("env") or []
            kept = [e for e in env if e.get("name") != "WEED_NOTIFICATION_WEBHOOK_BEARER_TOKEN"]
            if len(kept) != len(env):
                c["env"] = kept
                must_fail.add("seaweedfs: the filer notifies the auditor of a document put through S3")
    # eXo told to submit its mail on a port of the relay its egress policy does not open.
    for d in docs:
        data = d.get("data") or {}
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "exo-config" and "EXO_MAIL_SMTP_HOST" in data:
            must_fail.add(f"mail: eXo's rendered settings submit a message to the site's relay at "
                          f"{data['EXO_MAIL_SMTP_HOST']}:{UNLISTED_PORT} as {data.get('EXO_MAIL_FROM', '')}")
            data["EXO_MAIL_SMTP_PORT"] = str(UNLISTED_PORT)
    synapse_files = {}  # ConfigMap name -> the Synapse workload mounting it
    providers = []  # (Synapse workload, its OIDC provider)
    for d in docs:
        if d.get("kind") == "Deployment" or d.get("kind") == "StatefulSet":
            c = d["spec"]["template"]["spec"]["containers"][0]
            args = c.get("args") or []
            if image_repo(c.get("image", "")) == "docker.io/valkey/valkey" and "--requirepass" in args:
                i = args.index("--requirepass")
                c["args"] = args[:i] + args[i + 2:]
                must_fail.add(f"{d['metadata']['name']}: refuses a command without the password")
        if d.get("kind") in ("Deployment", "StatefulSet"):
            spec = d["spec"]["template"]["spec"]
            if image_repo(spec["containers"][0].get("image", "")) == "docker.io/matrixdotorg/synapse":
                synapse_files.update((v["configMap"]["name"], d["metadata"]["name"]) for v in spec.get("volumes") or [] if "configMap" in v)
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] in synapse_files:
            # Synapse's homeserver.yaml: the database section made SQLite's, open registration on
            # (without verification, which Synapse otherwise refuses to start with).
            workload = synapse_files[d["metadata"]["name"]]
            for k, v in (d.get("data") or {}).items():
                conf = yaml.safe_load(v)
                if isinstance(conf, dict) and "database" in conf:
                    media = conf.get("media_store_path", "/data/media_store").rsplit("/", 1)[0]
                    providers.extend((workload, p) for p in conf.get("oidc_providers") or [])
                    conf["database"] = {"name": "sqlite3", "args": {"database": f"{media}/homeserver.db"}}
                    conf["enable_registration"] = True
                    conf["enable_registration_without_verification"] = True
                    d["data"][k] = yaml.safe_dump(conf)
                    must_fail.add(f"{workload}: runs on the rendered PostgreSQL database, not SQLite")
                    must_fail.add(f"{workload}: refuses a registration without a token")
        if d.get("kind") == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                m = re.search(r"ALTER ROLE (\w+) WITH LOGIN NOSUPERUSER", v)
                if m:
                    d["data"][k] = v.replace(m.group(0), f"ALTER ROLE {m.group(1)} WITH LOGIN SUPERUSER", 1)
                    must_fail.add(f"postgresql: {m.group(1)} opens {m.group(1)} with its credential, no superuser")
    # The realm file's client for Synapse allowing another callback than Synapse's.
    for d in docs:
        if d.get("kind") != "ConfigMap":
            continue
        for k, v in (d.get("data") or {}).items():
            if not k.endswith(".json"):
                continue
            realm = json.loads(v)
            for workload, p in providers:
                for c in realm.get("clients") or [] if isinstance(realm, dict) else []:
                    if c.get("clientId") == p["client_id"] and c.get("redirectUris"):
                        c["redirectUris"] = ["https://elsewhere.example/callback"]
                        d["data"][k] = json.dumps(realm, indent=2)
                        must_fail.add(f"{workload}: sends a login to {p['issuer']} as client {p['client_id']}, to a callback the realm allows")
    # The NetworkPolicies widened: every podSelector peer of an ingress rule made cluster-wide
    # (namespaceSelector: {} added, the same labels in any namespace), and the egress opened to
    # every namespace and every outside address. The tenant, wearing the labels, then reaches
    # every port; every pod reaches the tenant's pod and the addresses and ports its egress
    # policy does not list.
    running = [(d["metadata"]["name"], c) for d in docs if d.get("kind") in ("Deployment", "StatefulSet")
               for c in d["spec"]["template"]["spec"]["containers"][:1]
               if IMAGES.get(image_repo(c.get("image", ""))) not in (None, "keycloak")]
    outside = outside_destinations(docs)
    # The namespace's isolation policy dropped: a pod without the workplace's labels is then
    # selected by no policy and sends anywhere.
    docs = [d for d in docs if not (d.get("kind") == "NetworkPolicy" and d["metadata"]["name"] == "workplace-isolate-namespace")]
    must_fail.add("isolation: an unlabelled pod of the workplace's namespace cannot reach a pod of another namespace")
    must_fail.update(f"isolation: an unlabelled pod of the workplace's namespace cannot reach {addr}:{port}"
                     for addr, port, what in outside if what == "listed")
    for d in docs:
        if d.get("kind") != "NetworkPolicy":
            continue
        for rule in d["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peer["namespaceSelector"] = {}
        if "Egress" in policy_types(d["spec"]):
            # The namespace's own pods made every namespace's: a pod of the tenant is reached.
            for rule in d["spec"].get("egress") or []:
                for peer in rule.get("to") or []:
                    if peer == {"podSelector": {}}:
                        peer["namespaceSelector"] = {}
                        must_fail.update(f"isolation: {w} cannot reach a pod of another namespace" for w, _ in running)
            # Every address outside the cluster (the harness's bridges, 10.231.0.0/16, excepted,
            # so that the tenant's pod is reached only through the namespace selector above).
            d["spec"].setdefault("egress", []).append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.231.0.0/16"]}}]})
            for w, _ in running:
                for addr, port, what in outside:
                    if what == "unlisted port":
                        must_fail.add(f"isolation: {w} cannot reach {addr} on port {port}, which its egress policy does not list")
                    elif what == "unlisted address":
                        must_fail.add(f"isolation: {w} cannot reach {addr}:{port}, an address its egress policy does not list")
    # SeaweedFS: the masters left unpeered (each its own raft cluster: three leaders), the S3
    # gateway left without its credentials (it then serves anonymous requests), and the backup
    # pods dropped from the filer's and the volume servers' ingress (the upload cannot land).
    backups = set()
    for d in docs:
        if d.get("kind") == "CronJob":
            backups.add(d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name"))
            command = " ".join(d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("command") or [])
            m = re.search(r"/buckets/([^/\s]+)/", command)
            if m and "seaweedfs" in d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("image", ""):
                must_fail.add(f"{d['metadata']['name']}: its commands, run as written, put a dump into the bucket {m.group(1)}")
        if d.get("kind") != "StatefulSet" or image_repo(d["spec"]["template"]["spec"]["containers"][0].get("image", "")) != "docker.io/chrislusf/seaweedfs":
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        args = c.get("args") or []
        if args[:1] == ["master"] and d["spec"].get("replicas", 1) > 1:
            c["args"] = [a for a in args if not a.startswith("-peers=")] + ["-peers=none"]
            must_fail.add(f"{d['metadata']['name']}: the {d['spec']['replicas']} masters elect exactly one leader, named by each")
        if "-s3" in args:
            c["env"] = [e for e in c.get("env") or [] if e["name"] not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
            must_fail.add(f"{d['metadata']['name']}: S3 refuses an anonymous request")
            must_fail.add(f"{d['metadata']['name']}: S3 refuses a request signed with a wrong secret")
    for d in docs:
        if d.get("kind") == "NetworkPolicy" and d["metadata"]["name"] in ("seaweedfs-filer-ingress", "seaweedfs-volume-ingress"):
            # A rule left with no peer would admit everyone: it goes.
            rules = []
            for rule in d["spec"].get("ingress") or []:
                peers = [p for p in rule.get("from") or []
                         if (p.get("podSelector", {}).get("matchLabels") or {}).get("app.kubernetes.io/name") not in backups]
                if peers or not rule.get("from"):
                    rules.append({**rule, "from": peers} if rule.get("from") else rule)
            d["spec"]["ingress"] = rules
    for w, c in running:
        for port in {p["containerPort"] for p in c.get("ports") or [] if p.get("protocol", "TCP") == "TCP"}:
            must_fail.add(f"isolation: {w} port {port} unreachable from another namespace")
        if IMAGES.get(image_repo(c.get("image", ""))) in ("postgres", "mariadb", "valkey"):
            must_fail.add(f"isolation: {w}: a tenant holding its credential cannot read it")
    return docs, must_fail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("rendered", help="the YAML stream hexagone-operator render prints")
    ap.add_argument("--budget", type=float, default=120, help="seconds for every pod to be ready and every Job to complete")
    ap.add_argument("--mutants", action="store_true",
                    help="then run a rendering made wrong (no Valkey password, a superuser role, Synapse on SQLite "
                         "with open registration, unpeered SeaweedFS masters, S3 without credentials, policies "
                         "widened...) and fail unless its checks fail")
    ap.add_argument("--keycloak", action="store_true",
                    help="run Keycloak too (its build and first start take minutes on two cores; not in the mutants' run)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch root (logs, data) for inspection")
    ap.add_argument("--auditor", help="the hexagone-auditor binary, to stand where the filer's notifications go")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("proving: needs root (network namespaces, setpriv)", file=sys.stderr)
        return 2
    docs = [d for d in yaml.safe_load_all(open(a.rendered)) if d]
    if not docs:
        print(f"proving: {a.rendered} holds no object", file=sys.stderr)
        return 2
    # A stopped run (tests/run's trap, a CI timeout) still removes its namespaces and processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    g = Ground(docs, a.budget, a.keep, keycloak=a.keycloak, auditor=a.auditor)
    try:
        g.go()
        rc = g.report()
    finally:
        g.down()
    if rc == 0 and a.mutants:
        bad, must_fail = mutants(docs)
        if not must_fail:
            print("proving: the mutants found nothing to break (the rendering changed?)", file=sys.stderr)
            return 1
        m = Ground(bad, a.budget, False, auditor=a.auditor)
        try:
            m.go()
        finally:
            m.down()
        failed = {name for name, ok, _ in m.checks if not ok}
        print("mutants (a wrong rendering the checks must catch):")
        for name in sorted(must_fail):
            print(f"  {'caught' if name in failed else 'MISSED'} {name}")
            rc |= 0 if name in failed else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
