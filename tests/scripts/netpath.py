#!/usr/bin/env python3
"""Network paths for the latency tests, run inside the test's network namespaces.

relay A B TO_B_US TO_A_US   forward every Ethernet frame between interfaces A and B, holding
                            each one TO_B_US (A to B) or TO_A_US (B to A) microseconds: distance
                            simulated in user space, packet by packet.
listen ADDRESS PORT         accept TCP connections and close them (the kernel answers the
                            handshakes; this keeps the backlog empty).
forge SRC DST PORT LO HI    send SYN-ACKs from SRC:PORT to every port LO..=HI of DST (its
                            ephemeral ports) with random sequence and acknowledgement numbers,
                            as a host that does not see DST's SYNs would, sweep after sweep (a
                            pause of SWEEP_PAUSE between two) until killed; prints how many it
                            sent.

Standard library only; needs root (raw and packet sockets).
"""

import heapq
import random
import signal
import socket
import struct
import sys
import threading
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def checksum(data, start=0):
    if len(data) % 2:
        data += b"\0"
    total = start + sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fix_tcp_checksum(ip):
    """Recompute the TCP checksum of an IPv4 packet: a frame taken off a veth may carry a
    checksum its sender's offload never filled in."""
    if len(ip) < 40 or ip[0] >> 4 != 4 or ip[9] != 6:
        return ip
    ihl = (ip[0] & 0x0F) * 4
    total = min(struct.unpack("!H", ip[2:4])[0], len(ip))
    if total < ihl + 20:
        return ip
    tcp = bytearray(ip[ihl:total])
    tcp[16:18] = b"\0\0"
    pseudo = sum(struct.unpack("!4H", bytes(ip[12:20]))) + 6 + len(tcp)
    tcp[16:18] = struct.pack("!H", checksum(bytes(tcp), pseudo))
    return bytes(ip[:ihl]) + bytes(tcp) + bytes(ip[total:])


def relay(a, b, to_b_us, to_a_us):
    socks = {}
    for name in (a, b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        socks[name] = s
    queue = []
    cond = threading.Condition()
    seq = 0

    def reader(src, dst, delay):
        nonlocal seq
        s = socks[src]
        while True:
            frame, addr = s.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue
            due = time.monotonic() + delay / 1e6
            with cond:
                seq += 1
                heapq.heappush(queue, (due, seq, dst, frame))
                cond.notify()

    def writer():
        while True:
            with cond:
                while not queue:
                    cond.wait()
                due, _, dst, frame = queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    cond.wait(wait)
                    continue
                heapq.heappop(queue)
            if len(frame) > 14 and frame[12:14] == b"\x08\x00":
                frame = frame[:14] + fix_tcp_checksum(frame[14:])
            socks[dst].send(frame)

    threading.Thread(target=reader, args=(a, b, to_b_us), daemon=True).start()
    threading.Thread(target=reader, args=(b, a, to_a_us), daemon=True).start()
    threading.Thread(target=writer, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def listen(address, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(1024)
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        conn.close()


# The pause between two sweeps: the flood stays a few thousand packets a second, which the
# relay (forwarding the vantage's resets to the node) and the measurement keep up with on a
# loaded two-core machine, while every port still sees a forged answer every few tens of ms.
SWEEP_PAUSE = 0.02


def forge(src, dst, port, lo, hi):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sent = 0
    stop = False

    def done(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, done)
    src_b, dst_b = socket.inet_aton(src), socket.inet_aton(dst)
    print("ready", flush=True)
    while not stop:
        for dport in range(lo, hi + 1):
            if stop:
                break
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src_b, dst_b))
            ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
            tcp = struct.pack(
                "!HHIIBBHHH",
                port,
                dport,
                random.getrandbits(32),
                random.getrandbits(32),
                5 << 4,
                0x12,  # SYN, ACK
                65535,
                0,
                0,
            )
            packet = fix_tcp_checksum(bytes(ip) + tcp)
            s.sendto(packet, (dst, 0))
            sent += 1
        time.sleep(SWEEP_PAUSE)
    print(sent, flush=True)


def main(argv):
    if len(argv) == 5 and argv[0] == "relay":
        relay(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) == 3 and argv[0] == "listen":
        listen(argv[1], int(argv[2]))
    elif len(argv) == 6 and argv[0] == "forge":
        forge(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
