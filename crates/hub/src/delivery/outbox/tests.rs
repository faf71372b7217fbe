//! The outbox's tests: bounds, draining, direct writes and their fallbacks.

use super::*;
use std::task::Waker;
use tokio::io::AsyncReadExt;

fn drain(outbox: &Outbox) -> Poll<Drained> {
    drain_into(outbox, &mut VecDeque::new())
}

fn drain_into(outbox: &Outbox, into: &mut VecDeque<(Position, Bytes)>) -> Poll<Drained> {
    outbox.poll_drain(&mut Context::from_waker(Waker::noop()), into, None)
}

#[test]
fn drains_everything_queued_at_once() {
    let outbox = Outbox::new(100);
    assert!(drain(&outbox).is_pending());
    assert_eq!(
        outbox.push(
            Position(1),
            &Frame::of(&Bytes::from_static(b"a")),
            Instant::now()
        ),
        Pushed::Queued
    );
    assert_eq!(
        outbox.push(
            Position(2),
            &Frame::of(&Bytes::from_static(b"b")),
            Instant::now()
        ),
        Pushed::Queued
    );
    let mut frames = VecDeque::new();
    assert!(matches!(
        drain_into(&outbox, &mut frames),
        Poll::Ready(Drained::Frames {
            oldest: Some(_),
            unfinished: None
        })
    ));
    assert_eq!(frames.len(), 2);
    assert!(drain(&outbox).is_pending());
}

#[test]
fn drained_buffers_are_recycled() {
    let outbox = Outbox::new(100);
    let mut frames = VecDeque::with_capacity(8);
    let given = frames.capacity();
    outbox.push(
        Position(1),
        &Frame::of(&Bytes::from_static(b"a")),
        Instant::now(),
    );
    let _ = drain_into(&outbox, &mut frames);
    assert_eq!(frames.len(), 1);
    frames.clear();
    // The outbox now holds the buffer handed in: the next push needs no allocation.
    outbox.push(
        Position(2),
        &Frame::of(&Bytes::from_static(b"b")),
        Instant::now(),
    );
    let mut again = VecDeque::new();
    let _ = drain_into(&outbox, &mut again);
    assert_eq!(again.capacity(), given);
    assert_eq!(again.len(), 1);
}

#[test]
fn overflow_closes_and_frees_the_queue() {
    let outbox = Outbox::new(10);
    assert_eq!(
        outbox.push(
            Position(1),
            &Frame::of(&Bytes::from(vec![0; 6])),
            Instant::now()
        ),
        Pushed::Queued
    );
    assert_eq!(
        outbox.push(
            Position(2),
            &Frame::of(&Bytes::from(vec![0; 6])),
            Instant::now()
        ),
        Pushed::Overflowed
    );
    assert_eq!(
        outbox.push(
            Position(3),
            &Frame::of(&Bytes::from(vec![0; 1])),
            Instant::now()
        ),
        Pushed::Closed
    );
    assert!(matches!(
        drain(&outbox),
        Poll::Ready(Drained::Closed(CloseReason::Overflow))
    ));
}

#[test]
fn the_bound_counts_bytes_drained_since() {
    let outbox = Outbox::new(10);
    outbox.push(
        Position(1),
        &Frame::of(&Bytes::from(vec![0; 8])),
        Instant::now(),
    );
    let _ = drain(&outbox);
    assert_eq!(
        outbox.push(
            Position(2),
            &Frame::of(&Bytes::from(vec![0; 8])),
            Instant::now()
        ),
        Pushed::Queued
    );
}

#[test]
fn chunk_size_lines_are_uppercase_hex() {
    let mut buf = [0u8; 18];
    assert_eq!(chunk_size_line(0, &mut buf), b"0\r\n");
    assert_eq!(chunk_size_line(255, &mut buf), b"FF\r\n");
    assert_eq!(chunk_size_line(4096, &mut buf), b"1000\r\n");
    assert_eq!(
        chunk_size_line(usize::MAX, &mut buf),
        b"FFFFFFFFFFFFFFFF\r\n"
    );
}

#[test]
fn a_frames_chunk_and_its_event_length_agree() {
    assert_eq!(&Frame::of(b"abc").chunk()[..], b"3\r\nabc\r\n");
    assert_eq!(&Frame::of(b"abc").bytes()[..], b"abc");
    for len in [0, 1, 15, 16, 255, 256, 4095, 4096, 65_535, 65_536, 1 << 20] {
        let chunk = as_chunk(&vec![b'x'; len]);
        assert_eq!(chunk, Frame::of(&vec![b'x'; len]).chunk());
        assert_eq!(event_len_of_chunk(chunk.len()), len, "{len}");
    }
}

/// A connected pair of loopback sockets: the hub's end, shared as an attached socket
/// is, and the client's.
async fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (Arc::new(accepted.unwrap().0), client.unwrap())
}

#[tokio::test]
async fn an_armed_outbox_is_written_by_the_flusher_as_one_chunk() {
    let (socket, mut client) = socket_pair().await;
    let outbox = Outbox::new(1 << 20);
    outbox.attach(socket, true);
    assert_eq!(outbox.framing(), Framing::Chunked);
    // Not armed yet: a push wakes the stream, as without a socket.
    assert_eq!(
        outbox.push(
            Position(1),
            &Frame::of(&Bytes::from_static(b"one\n\n")),
            Instant::now()
        ),
        Pushed::Queued
    );
    let mut frames = VecDeque::new();
    assert!(drain_into(&outbox, &mut frames).is_ready());
    frames.clear();
    // Waiting with nothing queued arms it; the replay covered position 2.
    assert!(
        outbox
            .poll_drain(
                &mut Context::from_waker(Waker::noop()),
                &mut frames,
                Some(Position(2))
            )
            .is_pending()
    );
    assert_eq!(
        outbox.push(
            Position(2),
            &Frame::of(&Bytes::from_static(b"dup\n\n")),
            Instant::now()
        ),
        Pushed::Scheduled
    );
    assert_eq!(
        outbox.push(Position(3), &Frame::of(b"three\n\n"), Instant::now()),
        Pushed::Queued,
        "a flush is pending already"
    );
    let mut tally = FlushTally::new();
    outbox.flush(&mut tally);
    assert_eq!(tally.bytes(), 7, "the event bytes written");
    assert_eq!(
        tally.latencies().count(),
        1,
        "one delivery's latency counted"
    );
    let mut got = vec![0u8; 12];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"7\r\nthree\n\n\r\n");
    assert!(outbox.last_direct_write().is_some());
    // Still armed: the next push is scheduled again.
    assert_eq!(
        outbox.push(
            Position(4),
            &Frame::of(&Bytes::from_static(b"four\n\n")),
            Instant::now()
        ),
        Pushed::Scheduled
    );
    // The stream wants to write (a heartbeat): disarmed, and the frame is its to drain.
    assert!(outbox.disarm());
    outbox.flush(&mut tally);
    assert!(matches!(
        drain_into(&outbox, &mut VecDeque::new()),
        Poll::Ready(Drained::Frames {
            oldest: Some(_),
            unfinished: None
        })
    ));
    outbox.detach();
    assert_eq!(outbox.framing(), Framing::ByConnection);
}

#[tokio::test]
async fn a_socket_that_takes_part_of_a_chunk_gives_the_rest_to_the_stream() {
    let (socket, mut client) = socket_pair().await;
    let outbox = Outbox::new(64 << 20);
    outbox.attach(socket, true);
    let mut tally = FlushTally::new();
    let mut frames = VecDeque::new();
    let frame = Frame::of(&vec![b'x'; 1 << 20]);
    let mut sent = 0;
    let rest = loop {
        assert!(drain_into(&outbox, &mut frames).is_pending());
        assert_eq!(
            outbox.push(Position(sent + 1), &frame, Instant::now()),
            Pushed::Scheduled
        );
        outbox.flush(&mut tally);
        sent += 1;
        // The client reads nothing: the socket's buffers fill.
        match drain_into(&outbox, &mut frames) {
            Poll::Pending => continue,
            Poll::Ready(Drained::Frames { unfinished, .. }) => {
                break (unfinished, frames.len());
            }
            Poll::Ready(Drained::Closed(_)) => panic!("closed"),
        }
    };
    // Either part of the chunk went (its rest comes back, framed) or none of it did (the
    // frame comes back queued).
    let written_whole = (sent as usize - 1) * (frame.bytes().len() + 10);
    match rest {
        (Some(unfinished), 0) => {
            let mut all = vec![0u8; written_whole + frame.bytes().len() + 10 - unfinished.len()];
            client.read_exact(&mut all).await.unwrap();
            all.extend_from_slice(&unfinished);
            assert!(all.ends_with(b"\r\n"));
            assert_eq!(all.len(), sent as usize * (frame.bytes().len() + 10));
        }
        (None, 1) => {}
        other => panic!("unexpected drain: {other:?}"),
    }
}
