//! Latency evidence measured for real, across network namespaces: a vantage point, a node and a
//! relay between them that holds every frame for a set time (distance simulated in user space),
//! and an accomplice beside the vantage forging early answers in the node's name.
//!
//! What is shown: a node whose answers take 0.4 ms is bound near the Paris vantage and placed in
//! France; one that takes 30 ms is not; the measured minimum is never below the delay on the
//! path, whatever the node adds; and forged SYN-ACKs from a host that does not see the
//! vantage's SYN never complete a handshake, so they never shorten a round trip.
//!
//! The relay, the node's listener and the forger are `tests/scripts/netpath.py` (Python's
//! standard library: packet and raw sockets, which this workspace's no-`unsafe` rule keeps out
//! of Rust). Needs root, iproute2 (`ip netns`) and python3, as the test bed has.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

const VANTAGE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const NODE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PORT: u16 = 10250;
/// The vantage's ephemeral ports: room for the test's 120 handshakes (each port waits in
/// TIME_WAIT after its close), few enough for the forger to sweep in milliseconds.
const EPHEMERAL: (u16, u16) = (40000, 40255);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, script: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{ns}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The four namespaces; deleted on drop (their interfaces go with them).
struct Bed {
    vantage: String,
    relay: String,
    node: String,
    accomplice: String,
}

impl Bed {
    fn new() -> Self {
        let id = std::process::id();
        let bed = Bed {
            vantage: format!("hx-vp-{id}"),
            relay: format!("hx-rl-{id}"),
            node: format!("hx-nd-{id}"),
            accomplice: format!("hx-ac-{id}"),
        };
        for ns in bed.all() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (vp, rl, nd, ac) = (&bed.vantage, &bed.relay, &bed.node, &bed.accomplice);
        ip(&[
            "link", "add", "v0", "netns", vp, "type", "veth", "peer", "name", "r0", "netns", rl,
        ]);
        ip(&[
            "link", "add", "r1", "netns", rl, "type", "veth", "peer", "name", "n0", "netns", nd,
        ]);
        ip(&[
            "link", "add", "va", "netns", vp, "type", "veth", "peer", "name", "av", "netns", ac,
        ]);
        ip(&["-n", vp, "addr", "add", "10.77.0.1/24", "dev", "v0"]);
        ip(&["-n", nd, "addr", "add", "10.77.0.2/24", "dev", "n0"]);
        ip(&["-n", vp, "addr", "add", "10.78.0.1/24", "dev", "va"]);
        ip(&["-n", ac, "addr", "add", "10.78.0.2/24", "dev", "av"]);
        for (ns, dev) in [
            (vp, "v0"),
            (vp, "va"),
            (rl, "r0"),
            (rl, "r1"),
            (nd, "n0"),
            (ac, "av"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // The accomplice reaches the vantage directly (no relay: it is "near"), and the vantage
        // does not filter by reverse path, so forged packets reach its TCP stack.
        ip(&["-n", ac, "route", "add", "10.77.0.0/24", "dev", "av"]);
        in_ns(
            vp,
            &format!(
                "echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter; echo 0 > /proc/sys/net/ipv4/conf/va/rp_filter; echo {} {} > /proc/sys/net/ipv4/ip_local_port_range",
                EPHEMERAL.0, EPHEMERAL.1
            ),
        );
        bed
    }

    fn all(&self) -> [&String; 4] {
        [&self.vantage, &self.relay, &self.node, &self.accomplice]
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in self.all() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A helper of `tests/scripts/netpath.py` running in namespace `ns`, killed on drop.
struct Helper(std::process::Child);

impl Helper {
    /// The path's parts (relay, listener) at real-time priority: a loaded machine must not
    /// stretch the simulated path (it could only lengthen it, but a test that fails under load
    /// is a bug).
    fn start(ns: &str, args: &[&str]) -> Helper {
        Helper::spawn(ns, &["chrt", "-f", "10"], args)
    }

    /// The attacker at an ordinary priority: a real-time flood on two cores left the
    /// measurement (and every other test) a few percent of the machine for minutes.
    fn attacker(ns: &str, args: &[&str]) -> Helper {
        Helper::spawn(ns, &[], args)
    }

    fn spawn(ns: &str, priority: &[&str], args: &[&str]) -> Helper {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/netpath.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(priority)
            .args(["python3", script])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "netpath.py {args:?} did not start");
        Helper(child)
    }

    /// Stops it (SIGTERM) and returns what it printed last.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let mut rest = String::new();
        let _ = self.0.stdout.take().unwrap().read_to_string(&mut rest);
        let _ = self.0.wait();
        rest
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The relay holding frames `to_node_us` one way and `to_vantage_us` the other.
fn relay(bed: &Bed, to_node_us: u64, to_vantage_us: u64) -> Helper {
    Helper::start(
        &bed.relay,
        &[
            "relay",
            "r0",
            "r1",
            &to_node_us.to_string(),
            &to_vantage_us.to_string(),
        ],
    )
}

/// The vantage's count of TCP resets sent (`/proc/net/snmp`, `Tcp: … OutRsts`).
fn resets_sent(ns: &str) -> u64 {
    let snmp = in_ns(ns, "cat /proc/net/snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "OutRsts")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

const POLICY_TAIL: &str = "vantagePoints:
  - name: paris-1
    site: Ministry data centre, Paris
    latitude: 48.8566
    longitude: 2.3522
    operatedBy: ministry SOC
    attestedBy: RSSI, visit report PV-2026-114
";

/// Measures from the vantage (as the operator of the vantage would run it) and judges the
/// node's address with `locate --latency`: the minimum round trip and the latency evidence.
fn measure(bed: &Bed, dir: &std::path::Path, name: &str) -> (u32, serde_json::Value) {
    let policy = dir.join("policy.yaml");
    let out = dir.join(format!("{name}.jsonl"));
    let bin = env!("CARGO_BIN_EXE_hexagone-auditor");
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.vantage,
            bin,
            "measure",
            "--vantage",
            "paris-1",
        ])
        .arg("--policy")
        .arg(&policy)
        .args(["--samples", "30", "--interval-ms", "2", "--out"])
        .arg(&out)
        .arg(format!("{NODE}:{PORT}"))
        .status()
        .unwrap();
    assert!(status.success(), "measure {name}");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    let min = line["roundTrips"]["minRttUs"].as_u64().unwrap() as u32;
    eprintln!(
        "{name}: minimum {min} µs over {} handshakes, bound {} km",
        line["roundTrips"]["rttUs"].as_array().unwrap().len(),
        line["roundTrips"]["boundKm"]
    );
    let located = Command::new(bin)
        .args(["locate", &NODE.to_string(), "--json", "--policy"])
        .arg(&policy)
        .arg("--latency")
        .arg(&out)
        .output()
        .unwrap();
    let evaluation: serde_json::Value = serde_json::from_slice(&located.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&located.stderr)));
    let latency = evaluation["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "latency")
        .cloned()
        .unwrap_or_else(|| panic!("no latency evidence: {evaluation}"));
    (min, latency)
}

#[test]
fn round_trips_bound_a_node_and_nothing_it_or_an_accomplice_does_makes_it_look_closer() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/france-diffusion-restreinte.yaml"
    ))
    .unwrap()
    .replace(
        "requiredSources: [attestation, address]",
        "requiredSources: [attestation, address, latency]",
    ) + POLICY_TAIL;
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();

    let bed = Bed::new();
    let _node = Helper::start(&bed.node, &["listen", &NODE.to_string(), &PORT.to_string()]);

    // 0.2 ms each way: 0.4 ms of round trip, 60 km from the Paris vantage, all in France.
    let path = relay(&bed, 200, 200);
    let (min, latency) = measure(&bed, dir.path(), "near");
    assert!(min >= 400, "a round trip shorter than the path: {min} µs");
    assert_eq!(latency["assessment"], "supports", "{latency}");
    assert!(
        latency["sentence"]
            .as_str()
            .unwrap()
            .ends_with("that area lies in FR, an allowed country"),
        "{latency}"
    );
    assert_eq!(latency["controller"], "physics");
    drop(path);

    // 15 ms each way: the node claims Paris but answers in 30 ms. Not supported, and not a
    // violation either: a slow answer is not a location.
    let path = relay(&bed, 15_000, 15_000);
    let (min, latency) = measure(&bed, dir.path(), "far");
    assert!(min >= 30_000, "{min} µs");
    assert_eq!(latency["assessment"], "inconclusive", "{latency}");
    assert!(
        latency["sentence"]
            .as_str()
            .unwrap()
            .contains("which proves nothing: that area reaches outside the allowed countries"),
        "{latency}"
    );

    // Far, with an accomplice beside the vantage forging SYN-ACKs in the node's name.
    // The vantage's ephemeral ports are EPHEMERAL (its namespace's ip_local_port_range): the
    // forger sweeps all of them every few tens of milliseconds, so a forged SYN-ACK reaches
    // most handshakes' own port while its SYN waits, which a sweep of the kernel's default
    // 28,000 ports rarely did.
    let before = resets_sent(&bed.vantage);
    let forger = Helper::attacker(
        &bed.accomplice,
        &[
            "forge",
            &NODE.to_string(),
            &VANTAGE.to_string(),
            &PORT.to_string(),
            &EPHEMERAL.0.to_string(),
            &EPHEMERAL.1.to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (min, latency) = measure(&bed, dir.path(), "forged");
    let forged: u64 = forger.stop().trim().parse().unwrap();
    let resets = resets_sent(&bed.vantage) - before;
    eprintln!("forged: {forged} SYN-ACKs sent, {resets} resets by the vantage");
    // The forged answers reached the vantage's TCP stack (it reset them)...
    assert!(
        forged > 1_000 && resets > 500,
        "forged {forged}, resets {resets}"
    );
    // ...and completed no handshake: the round trip is still the path's.
    assert!(
        min >= 30_000,
        "forged answers shortened the round trip to {min} µs"
    );
    assert_eq!(latency["assessment"], "inconclusive", "{latency}");
    drop(path);

    // The node holds its answers back (5 ms more): the round trip grows by as much, never
    // shrinks.
    let _path = relay(&bed, 200, 5_200);
    let (min, _) = measure(&bed, dir.path(), "held");
    assert!(min >= 5_400, "{min} µs");
}
