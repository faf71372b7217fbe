//! Does batching a fan-out's writes into io_uring submissions make them cheaper?
//!
//! Issue 15 suggested batching the direct writes of one update (`io_uring` where the kernel has
//! it). This program measures the ceiling of that idea on the machine it runs on, without the
//! hub: 2,000 loopback TCP connections, and 64 bytes sent to each, 50 times, once with one
//! `send` system call per connection (what the hub's flush tasks do) and once as `IORING_OP_SEND`
//! entries submitted 1,024 at a time with one `io_uring_enter`. Both use `MSG_DONTWAIT`, so
//! neither waits for a socket. It also times a trivial system call (`getppid`): what a batch can
//! save per write at most. The readers are drained between rounds, not woken per write: the
//! figures are the sender's side only.
//!
//! The only `unsafe` here is the FFI and io_uring's submission (whose buffers outlive the
//! `submit_and_wait` that completes them). It is an experiment, not part of the workspace.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

const CONNECTIONS: usize = 2000;
const ROUNDS: usize = 50;
const BATCH: usize = 1024;

fn main() {
    let calls = 2_000_000;
    let started = Instant::now();
    for _ in 0..calls {
        // SAFETY: getppid takes no argument and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    println!(
        "getppid: {:.0} ns per call",
        per(started.elapsed().as_nanos(), calls)
    );

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = listener.local_addr().unwrap();
    let (mut readers, mut writers) = (Vec::new(), Vec::new());
    for _ in 0..CONNECTIONS {
        let reader = TcpStream::connect(addr).expect("connect");
        let (writer, _) = listener.accept().expect("accept");
        writer.set_nodelay(true).unwrap();
        reader.set_nonblocking(true).unwrap();
        readers.push(reader);
        writers.push(writer);
    }
    let message = [b'x'; 64];
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    let mut ring = io_uring::IoUring::new(BATCH as u32).expect("io_uring (kernel 5.6 or later)");
    let (mut send_nanos, mut ring_nanos) = (0, 0);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for writer in &writers {
            // SAFETY: the buffer outlives the call.
            let sent = unsafe {
                libc::send(
                    writer.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    flags,
                )
            };
            assert_eq!(sent, 64);
        }
        send_nanos += started.elapsed().as_nanos();
        drain(&mut readers);

        let started = Instant::now();
        for batch in writers.chunks(BATCH) {
            for writer in batch {
                let entry = io_uring::opcode::Send::new(
                    io_uring::types::Fd(writer.as_raw_fd()),
                    message.as_ptr(),
                    message.len() as u32,
                )
                .flags(flags)
                .build();
                // SAFETY: `message` and the sockets outlive the `submit_and_wait` below, which
                // returns once every entry of the batch has completed.
                unsafe { ring.submission().push(&entry).expect("room in the ring") };
            }
            ring.submit_and_wait(batch.len()).expect("io_uring_enter");
            let completed = ring
                .completion()
                .inspect(|c| assert_eq!(c.result(), 64))
                .count();
            assert_eq!(completed, batch.len());
        }
        ring_nanos += started.elapsed().as_nanos();
        drain(&mut readers);
    }
    let writes = CONNECTIONS * ROUNDS;
    println!(
        "one send per write: {:.0} ns per write; io_uring, {BATCH} per submission: {:.0} ns per write",
        per(send_nanos, writes),
        per(ring_nanos, writes)
    );
}

fn drain(readers: &mut [TcpStream]) {
    let mut buffer = [0; 4096];
    for reader in readers {
        while matches!(reader.read(&mut buffer), Ok(n) if n > 0) {}
    }
}

fn per(nanos: u128, count: usize) -> f64 {
    nanos as f64 / count as f64
}
