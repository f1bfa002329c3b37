//! Free loopback ports, never handed out twice within one test process.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

use crate::Error;

/// Ports already given to a test bed of this process; the kernel may offer a port again as soon
/// as its probe listener closes, so two test beds started together could otherwise collide.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Reserves `n` distinct free ports on 127.0.0.1.
///
/// The probe listeners are all held until every port is chosen, then closed so the components
/// can bind them. Another process could still take one in between; that race is narrow and
/// shows up as a component failing to bind, with its log in the error.
pub(crate) fn reserve(n: usize) -> Result<Vec<u16>, Error> {
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        if attempts > 1000 {
            return Err(Error::Port(std::io::Error::other(
                "no unused port after 1000 attempts",
            )));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Port)?;
        let port = listener.local_addr().map_err(Error::Port)?.port();
        if taken.insert(port) {
            ports.push(port);
        }
        listeners.push(listener);
    }
    Ok(ports)
}
