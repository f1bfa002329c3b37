#!/usr/bin/env python3
"""The proving ground: a rendered Workplace's real software, run as processes.

    proving.py RENDERED.yaml [--budget SECONDS] [--mutants] [--keycloak] [--keep]

RENDERED.yaml is the YAML stream `hexagone-operator render -f manifests/samples/workplace.yaml`
prints. For every pod the rendered workloads (StatefulSet, Deployment, Job) describe, whose image
has a local stand-in below (IMAGES), the harness runs the real program as a process:

- the pod's rendered env (value, secretKeyRef, configMapKeyRef, fieldRef, envFrom), with
  $(VAR) expanded in command and args as the kubelet does;
- its volumes under a scratch root: ConfigMap and Secret keys written as files, emptyDir and
  claims as empty directories owned by the pod's fsGroup, every mount path in args, env and
  the mounted ConfigMap files rewritten to its scratch directory;
- under the pod's runAsUser/runAsGroup, no capabilities (empty bounding and inheritable sets)
  and no_new_privs (setpriv);
- in a network namespace of its own on a bridge, where every Service name (short, with the
  namespace, .svc and .svc.cluster.local) resolves to the address of the pod it selects (an
  /etc/netns/<ns>/hosts file, which `ip netns exec` mounts over /etc/hosts).

Init containers run first, in order; a container that exits is restarted; the rendered Ingress
hosts reach the Ingress controller the harness plays (ingress.py). Then it runs each
container's rendered readiness probe as written (tcpSocket, httpGet, exec) until it passes or
the budget ends, runs the rendered Jobs to completion alongside, and checks the
components against each other from a client namespace of their own. It prints one line per
workload: ready / failed (why) / not runnable here (why). Exit 1 when anything that ran failed.

Secrets: the operator generates the credentials in the cluster and the offline rendering carries
none, so the harness generates each referenced Secret key (32 random characters), as the
operator does. Needs root (namespaces, setpriv), iproute2, util-linux and the packages
tests/scripts/proving-packages.sh installs. Standard library and PyYAML only.
"""

import argparse
import glob
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
}

# The images' stop signals other than SIGTERM: the postgres image stops PostgreSQL with SIGINT,
# its fast shutdown (docker-library/postgres 17/bookworm/Dockerfile, `STOPSIGNAL SIGINT`).
STOP_SIGNALS = {"postgres": signal.SIGINT}

# Why the other images do not run here (named in the output).
NOT_HERE = {
    "exoplatform/exo": "eXo: no package outside its image",
    "onlyoffice/documentserver": "ONLYOFFICE: no package outside its image",
    "jitsi/": "Jitsi: no package outside its images",
    "elasticsearch": "Elasticsearch: no package outside its image",
    "chrislusf/seaweedfs": "SeaweedFS: the module proxy reachable here does not serve the image's version",
    "keycloak/keycloak": "Keycloak: runs with --keycloak (its build and first start take minutes on two cores)",
    "postfix": "Postfix: not installed by the harness yet",
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
    def __init__(self, docs, budget, keep, keycloak=False):
        self.docs = docs
        self.keycloak = keycloak
        self.budget = budget
        self.keep = keep
        self.namespace = None
        self.configmaps = {}
        self.services = []
        self.ingresses = []
        self.secrets = {}
        self.pods = []
        self.jobs = []
        self.skipped = []
        self.results = {}
        tag = f"{os.getpid() % 10000}"
        self.tag = tag
        self.bridge = f"hxpg{tag}"
        self.subnet = f"10.231.{os.getpid() % 250}"
        self.scratch = tempfile.mkdtemp(prefix="hexagone-proving.")
        os.chmod(self.scratch, 0o755)
        self.netns = []
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
            elif kind in ("StatefulSet", "Deployment"):
                spec = d["spec"]
                replicas = spec.get("replicas", 1)
                for i in range(replicas):
                    name = f"{meta['name']}-{i}" if kind == "StatefulSet" else f"{meta['name']}-{i}"
                    pod = Pod(kind, meta["name"], name, spec["template"], i)
                    if pod.adapter() == "keycloak" and not self.keycloak:
                        pod.skip_reason = NOT_HERE["keycloak/keycloak"]
                    (self.pods if pod.adapter() and not pod.skip_reason else self.skipped).append(pod)
            elif kind == "Job":
                self.jobs.append(Pod(kind, meta["name"], meta["name"], d["spec"]["template"], 0))
            elif kind == "CronJob":
                tpl = d["spec"]["jobTemplate"]["spec"]["template"]
                self.skipped.append(Pod(kind, meta["name"], meta["name"], tpl, 0))

    def secret_keys(self, name):
        # The operator's generated credential Secrets hold one key (platform/src/workplace/
        # render.rs, CREDENTIAL_KEY).
        return ["value"]

    def secret(self, name, key):
        return self.secrets.setdefault((name, key), secrets.token_urlsafe(24)[:32])

    # --- network ------------------------------------------------------------------------

    def net_up(self):
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        everyone = self.pods + self.jobs + [Pod("Client", "client", "client", {"spec": {"containers": [{}]}}, 0)]
        self.client = everyone[-1]
        for n, pod in enumerate(everyone, start=2):
            pod.ns = f"hxp{self.tag}-{n}"
            pod.ip = f"{self.subnet}.{n}"
            host_if, pod_if = f"hxh{self.tag}-{n}", f"hxc{self.tag}-{n}"
            run(["ip", "netns", "add", pod.ns])
            self.netns.append(pod.ns)
            run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if])
            run(["ip", "link", "set", host_if, "master", self.bridge, "up"])
            run(["ip", "link", "set", pod_if, "netns", pod.ns])
            for cmd in (
                ["ip", "link", "set", "lo", "up"],
                ["ip", "link", "set", pod_if, "name", "eth0"],
                ["ip", "addr", "add", f"{pod.ip}/24", "dev", "eth0"],
                ["ip", "link", "set", "eth0", "up"],
            ):
                run(["ip", "netns", "exec", pod.ns, *cmd])
        hosts = ["127.0.0.1 localhost"]
        for svc in self.services:
            sel = svc["spec"].get("selector") or {}
            ns = svc["metadata"].get("namespace", self.namespace)
            name = svc["metadata"]["name"]
            chosen = [p for p in self.pods if sel and all(p.labels.get(k) == v for k, v in sel.items())]
            if chosen:
                names = [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
                hosts.append(f"{chosen[0].ip} {' '.join(names)}")
                if svc["spec"].get("clusterIP") == "None":
                    for p in chosen:
                        hosts.append(f"{p.ip} {p.name}.{name} {p.name}.{name}.{ns}.svc.cluster.local")
        # Every Ingress host resolves to the bridge's address, where the harness plays the
        # Ingress controller (tests/proving/ingress.py).
        public = sorted({r["host"] for i in self.ingresses for r in i["spec"].get("rules") or [] if r.get("host")})
        if public:
            hosts.append(f"{self.subnet}.1 {' '.join(public)}")
        passwd = open("/etc/passwd").read()
        group = open("/etc/group").read()
        for pod in everyone:
            etc = f"/etc/netns/{pod.ns}"
            os.makedirs(etc, exist_ok=True)
            with open(f"{etc}/hosts", "w") as f:
                f.write("\n".join(hosts + [f"{pod.ip} {pod.name}"]) + "\n")
            # The image's own /etc/passwd names its user; a uid unknown here gets an entry, so
            # programs that look their user up (initdb, postgres) find one.
            if pod.kind != "Client":
                uid, gid, _ = pod.security()
                p, g = passwd, group
                if not any(line.split(":")[2:3] == [str(uid)] for line in passwd.splitlines()):
                    p += f"pod:x:{uid}:{gid}:pod:/nonexistent:/usr/sbin/nologin\n"
                if not any(line.split(":")[2:3] == [str(gid)] for line in group.splitlines()):
                    g += f"pod:x:{gid}:\n"
                open(f"{etc}/passwd", "w").write(p)
                open(f"{etc}/group", "w").write(g)

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
        elif kind == "valkey":
            # Redis stands in for Valkey (bookworm packages no valkey-server); the image's
            # working directory is /data (valkey-io/valkey-container 9.0/debian/Dockerfile).
            if argv[:1] != ["valkey-server"]:
                raise RuntimeError(f"args {argv[:1]}: the valkey adapter expects `valkey-server ...`")
            argv = ["redis-server", *argv[1:]]
            return self.spawn(pod, argv, pod.name, cwd=pod.mounts.get("/data"))
        return self.spawn(pod, argv, pod.name)

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
        self.check_matrix_admin()

    def run_job(self, job, deadline):
        try:
            self.prepare(job)
            argv = self.argv(job)
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
            roles = re.findall(r"\\getenv app_password (\w+)\s*\n\s*SELECT 'CREATE ROLE (\w+) LOGIN'", sql)
            databases = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql))
            if not roles:
                self.check(f"{job.name}: roles", False, "no role found in the Job's SQL")
            for var, role in roles:
                password = job.env.get(var) or ""
                own = [d for d, o in databases.items() if o == role]
                if not own:
                    self.check(f"database of {role}", False, "the SQL creates no database owned by it")
                    continue
                q = ["psql", "-X", "-At", "-h", host, "-p", port, "-U", role, "-d", own[0], "-c",
                     "SELECT current_user || ' ' || rolsuper FROM pg_roles WHERE rolname = current_user"]
                r = self.as_pod(self.client, q, env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
                self.check(f"postgresql: {role} opens {own[0]} with its credential, no superuser",
                           r.returncode == 0 and r.stdout.strip() == f"{role} false", (r.stdout + r.stderr).strip()[-200:])
                r = self.as_pod(self.client, q, env={"PGPASSWORD": password + "x", "PGCONNECT_TIMEOUT": "5"})
                self.check(f"postgresql: {role} refused with a wrong password",
                           r.returncode != 0 and "password authentication failed" in r.stderr, r.stderr.strip()[-200:])
                others = [d for d, o in databases.items() if o != role]
                if others:
                    q2 = [others[0] if i == q.index("-d") + 1 else a for i, a in enumerate(q)]
                    r = self.as_pod(self.client, q2, env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
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
            base = ["mariadb", "--no-defaults", "-h", host, "-P", port, "-u", user, "-N", "-B", "--connect-timeout=5", db]
            r = self.as_pod(self.client, base + [f"-p{pod.env['MYSQL_PASSWORD']}", "-e", "SELECT DATABASE()"])
            self.check(f"{pod.workload}: {user} opens {db} with its credential",
                       r.returncode == 0 and r.stdout.strip() == db, (r.stdout + r.stderr).strip()[-200:])
            r = self.as_pod(self.client, base + [f"-p{pod.env['MYSQL_PASSWORD']}x", "-e", "SELECT 1"])
            self.check(f"{pod.workload}: {user} refused with a wrong password",
                       r.returncode != 0 and "Access denied" in r.stderr, r.stderr.strip()[-200:])

    def check_valkey(self):
        for pod, host, port in self.ready("valkey"):
            password = pod.env.get("VALKEY_PASSWORD", "")
            for what, auth, expected in (
                ("refuses a command without the password", [], "NOAUTH"),
                ("refuses a wrong password", ["-a", "not-" + password], "WRONGPASS"),
                ("accepts it with the rendered password", ["-a", password], "OK"),
            ):
                r = self.as_pod(self.client, ["redis-cli", "-h", host, "-p", port, "--no-auth-warning", *auth, "SET", "k", "v"])
                out = (r.stdout + r.stderr).strip()
                ok = out == "OK" if expected == "OK" else expected in out
                self.check(f"{pod.workload}: {what}", ok, out[-200:])

    def http(self, url, method="GET", body=None, headers=None):
        """One HTTP request from the client namespace, as `nobody`; returns (status, body), the
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
        r = self.as_pod(self.client, ["/usr/bin/python3", "-c", script, url, method, body or "", json.dumps(headers)], env=ca)
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
        q = ["psql", "-X", "-At", "-F", " ", "-h", host, "-p", port, "-U", pod.env.get("POSTGRES_USER", "postgres"), "-d", db, "-c", sql]
        return self.as_pod(self.client, q, env={"PGPASSWORD": pod.env["POSTGRES_PASSWORD"], "PGCONNECT_TIMEOUT": "5"})

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
            status, text = self.http(f"http://{host}:{port}/_matrix/client/versions")
            self.check(f"{w}: /_matrix/client/versions answers over the Service {host}",
                       status == 200 and '"versions"' in text, f"{status}: {text[-200:]}")
            # Open registration: an account asked for without a token (the dummy stage, all
            # an open server needs) is refused (M_FORBIDDEN, "Registration has been disabled").
            body = '{"username": "proving", "password": "proving-Ground-1", "auth": {"type": "m.login.dummy"}}'
            status, text = self.http(f"http://{host}:{port}/_matrix/client/v3/register", "POST", body)
            self.check(f"{w}: refuses a registration without a token", status == 403 and "M_FORBIDDEN" in text,
                       f"{status}: {text[-200:]}")
            self.check_synapse_sso(pod, host, port)
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

    def check_synapse_sso(self, pod, host, port):
        """Synapse offers its rendered OIDC provider at login, and sends a user to the issuer's
        authorization endpoint as the rendered client, with a callback address the rendered
        realm file allows for that client (Keycloak refuses any other)."""
        conf = yaml.safe_load(open(pod.config_path)) or {}
        for provider in conf.get("oidc_providers") or []:
            # Synapse names a provider `oidc-<idp_id>` (element-hq/synapse@v1.141.0:synapse/config/oidc.py:266).
            idp = "oidc-" + provider["idp_id"]
            status, text = self.http(f"http://{host}:{port}/_matrix/client/v3/login")
            offered = [i.get("id") for f in (json.loads(text).get("flows", []) if status == 200 else [])
                       for i in f.get("identity_providers", [])]
            self.check(f"{pod.workload}: offers the {idp} login", idp in offered, f"{status}: {text[-200:]}")
            back = conf.get("public_baseurl", "").rstrip("/") + "/"
            status, location = self.http(f"http://{host}:{port}/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl={urllib.parse.quote(back)}")
            if status == 302 and location.startswith(back):
                # Synapse first sends a request that did not come to its public address there,
                # for its cookie (element-hq/synapse@v1.141.0:synapse/rest/client/login.py:656-680): through the
                # Ingress.
                status, location = self.http(location)
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
            mounts = {m["mountPath"]: m for m in pod.container.get("volumeMounts") or []}
            volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
            realms = [json.loads(self.configmaps[volumes[m["name"]]["configMap"]["name"]][m["subPath"]])
                      for path, m in mounts.items() if path.startswith("/opt/keycloak/data/import/") and m.get("subPath")]
            if not realms:
                self.check("keycloak: a realm file is imported", False, "no file mounted in /opt/keycloak/data/import")
            for realm in realms:
                name = realm["realm"]
                status, text = self.http(f"{base}/realms/{name}/.well-known/openid-configuration")
                issuer = pod.env.get("KC_HOSTNAME", "").rstrip("/") + f"/realms/{name}"
                found = json.loads(text).get("issuer") if status == 200 else None
                self.check(f"keycloak: the {name} realm's discovery answers over the Service {host}, issuer {issuer}",
                           found == issuer, f"{status}: issuer {found}: {text[-200:]}")
                form = {"Content-Type": "application/x-www-form-urlencoded"}
                user, password = pod.env.get("KC_BOOTSTRAP_ADMIN_USERNAME", ""), pod.env.get("KC_BOOTSTRAP_ADMIN_PASSWORD", "")
                token_url = f"{base}/realms/master/protocol/openid-connect/token"
                grant = {"grant_type": "password", "client_id": "admin-cli", "username": user}
                status, text = self.http(token_url, "POST", urllib.parse.urlencode({**grant, "password": password + "x"}), form)
                self.check("keycloak: the bootstrap admin is refused with a wrong password",
                           status == 401 and "invalid_grant" in text, f"{status}: {text[-200:]}")
                status, text = self.http(token_url, "POST", urllib.parse.urlencode({**grant, "password": password}), form)
                token = json.loads(text).get("access_token") if status == 200 else None
                status, text = self.http(f"{base}/admin/realms/{name}/clients", headers={"Authorization": f"Bearer {token}"})
                present = {c.get("clientId") for c in json.loads(text)} if status == 200 else set()
                wanted = {c["clientId"] for c in realm.get("clients") or []}
                self.check(f"keycloak: the {name} realm has the clients {', '.join(sorted(wanted))}",
                           bool(wanted) and wanted <= present, f"{status}: missing {sorted(wanted - present)}: {text[-200:]}")
            break  # the replicas share the database: one answers for all

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
            status, text = self.http(f"http://{host}:{port}/_matrix/client/v3/login", "POST", body)
            token = json.loads(text).get("access_token") if status == 200 else None
            admin_status, admin_text = self.http(f"http://{host}:{port}/_synapse/admin/v2/users/@{user}:{server_name}",
                                                 headers={"Authorization": f"Bearer {token}"})
            admin = admin_status == 200 and json.loads(admin_text).get("admin") is True
            self.check(name, admin, f"login {status}: {text[-200:]}; admin API {admin_status}: {admin_text[-200:]}")

    def services_of(self, pod):
        for svc in self.services:
            sel = svc["spec"].get("selector") or {}
            if sel and all(pod.labels.get(k) == v for k, v in sel.items()) and svc["spec"].get("clusterIP") != "None":
                yield svc

    # --- output and cleanup ---------------------------------------------------------------

    def report(self):
        ran = [j for j in self.jobs if j.adapter() and not j.skip_reason]
        print(f"proving ground: {len(self.pods) + len(ran)} of the {len(self.pods) + len(self.skipped) + len(self.jobs)} rendered pods run here")
        failed = False
        for pod in self.pods + [j for j in self.jobs if j.adapter() and not j.skip_reason]:
            state, detail = self.results.get(pod.name, ("failed", "not started"))
            failed |= state == "failed"
            label = "ran and ready" if state == "ready" else "ran and completed" if state == "completed" else "ran and FAILED"
            print(f"  {pod.name:32} {label} ({detail}) [{pod.image} -> {stand_in(pod.adapter())}]")
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
        for ns in self.netns:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in [subprocess.Popen(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL) for ns in self.netns]:
            proc.wait()
        for ns in self.netns:
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        try:
            os.rmdir("/etc/netns")  # only when no other namespace keeps files there
        except OSError:
            pass
        for path in reversed(self.bound):
            if subprocess.run(["umount", path], capture_output=True).returncode != 0:
                log(f"could not unmount {path}: {self.scratch} kept")
                return
        if self.keep:
            log(f"kept {self.scratch}")
        else:
            # Removed in the background: deleting the databases' files takes seconds on a disk
            # mounted with online discard, and nothing waits for it.
            subprocess.Popen(["rm", "-rf", "--one-file-system", self.scratch], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stand_in(adapter):
    if adapter == "postgres":
        return "PostgreSQL " + re.search(r"\d+\.\d+", run([pg_bin("postgres"), "--version"]).stdout).group(0)
    if adapter == "mariadb":
        return "MariaDB " + re.search(r"\d+\.\d+\.\d+", run(["/usr/sbin/mariadbd", "--version"]).stdout).group(0)
    if adapter == "valkey":
        v = re.search(r"v=(\S+)", run(["redis-server", "--version"]).stdout)
        return "Redis " + (v.group(1) if v else "?")
    if adapter == "keycloak":
        return "Keycloak distribution (Maven Central), " + run(["java", "-version"]).stderr.splitlines()[0]
    if adapter == "synapse":
        cache = os.environ.get("HEXAGONE_CACHE") or os.path.expanduser("~/.cache/hexagone")
        found = glob.glob(os.path.join(cache, "synapse", "*", "venv", "lib", "python3*", "site-packages", "matrix_synapse-*.dist-info"))
        return "Synapse " + ", ".join(sorted(re.search(r"matrix_synapse-(.+)\.dist-info", f).group(1) for f in found)) + " (its Python package)"
    return "?"


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
    """The rendering made wrong in ways the checks must catch: Valkey without --requirepass, an
    application role made superuser, Synapse on SQLite with open registration, the realm's
    client for Synapse allowing another callback. Returns (mutated docs, names of the checks
    that must fail)."""
    import copy

    docs = copy.deepcopy(docs)
    must_fail = set()
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
    return docs, must_fail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("rendered", help="the YAML stream hexagone-operator render prints")
    ap.add_argument("--budget", type=float, default=120, help="seconds for every pod to be ready and every Job to complete")
    ap.add_argument("--mutants", action="store_true",
                    help="then run a rendering made wrong (no Valkey password, a superuser role, Synapse on SQLite "
                         "with open registration) and fail unless its checks fail")
    ap.add_argument("--keycloak", action="store_true",
                    help="run Keycloak too (its build and first start take minutes on two cores; not in the mutants' run)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch root (logs, data) for inspection")
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
    g = Ground(docs, a.budget, a.keep, keycloak=a.keycloak)
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
        m = Ground(bad, a.budget, False)
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
