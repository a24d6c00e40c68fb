//! Bad input on the AMQP listener, over raw TCP: each case gets the close code the spec gives (or
//! the protocol header answer), the socket is closed, and the gateway keeps serving others.

use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass};
use amq_protocol::types::{FieldTable, LongString};
use e2e_tests::InProcessGateway;
use gateway_amqp::codec;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and completes the handshake, asking for `heartbeat` seconds.
    async fn open(gateway: &InProcessGateway, heartbeat: u16) -> Raw {
        let mut stream = TcpStream::connect(gateway.gateway.amqp_addr())
            .await
            .unwrap();
        stream.write_all(&codec::PROTOCOL_HEADER).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let start = raw.next().await;
        assert!(matches!(
            start,
            AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(_)))
        ));
        raw.send(&AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: LongString::from(b"\0guest\0guest".to_vec()),
                locale: "en_US".into(),
            })),
        ))
        .await;
        let tune = match raw.next().await {
            AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => t,
            other => panic!("expected tune, got {other:?}"),
        };
        raw.send(&AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat,
            })),
        ))
        .await;
        raw.send(&AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: "/".into(),
            })),
        ))
        .await;
        let open_ok = raw.next().await;
        assert!(matches!(
            open_ok,
            AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
        ));
        raw
    }

    async fn send(&mut self, frame: &AMQPFrame) {
        let mut bytes = Vec::new();
        codec::encode(frame, &mut bytes);
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn next(&mut self) -> AMQPFrame {
        tokio::time::timeout(
            WAIT,
            codec::read_frame(&mut self.stream, 1 << 20, &mut self.buf),
        )
        .await
        .expect("a frame in time")
        .expect("a well-formed frame")
    }

    async fn open_channel(&mut self, id: u16) {
        self.send(&AMQPFrame::Method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        ))
        .await;
        let ok = self.next().await;
        assert!(matches!(
            ok,
            AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        ));
    }

    /// Reads until connection.close; returns its reply code, answers close-ok, and checks that
    /// the server then closes the socket.
    async fn expect_connection_close(mut self) -> u16 {
        let code = loop {
            match self.next().await {
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                    break c.reply_code
                }
                AMQPFrame::Heartbeat => continue,
                other => panic!("expected connection.close, got {other:?}"),
            }
        };
        self.send(&AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
        ))
        .await;
        self.expect_eof().await;
        code
    }

    async fn expect_eof(mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server closes the socket");
    }
}

fn queue_declare(channel: u16, name: &str) -> AMQPFrame {
    AMQPFrame::Method(
        channel,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            passive: false,
            durable: false,
            exclusive: true,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
}

/// A healthy connection still works: declare a queue, publish, get it back.
async fn still_serving(gateway: &InProcessGateway) {
    let mut raw = Raw::open(gateway, 0).await;
    raw.open_channel(1).await;
    raw.send(&queue_declare(1, "")).await;
    let name = match raw.next().await {
        AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => ok.queue,
        other => panic!("expected declare-ok, got {other:?}"),
    };
    raw.send(&AMQPFrame::Method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: name,
            no_ack: true,
        })),
    ))
    .await;
    let answer = raw.next().await;
    assert!(matches!(
        answer,
        AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_header_is_answered_with_ours_and_closed() {
    let gateway = InProcessGateway::start().await;
    // (AMQP 1.0's headers go to the 1.0 front end on this port: tests/amqp1_fe2o3.rs.)
    for header in [
        &b"AMQP\x00\x00\x08\x00"[..],
        b"AMQP\x01\x01\x00\x0a",
        b"GET / HTTP/1.1\r\n",
    ] {
        let mut stream = TcpStream::connect(gateway.gateway.amqp_addr())
            .await
            .unwrap();
        stream.write_all(header).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("closed in time")
            .unwrap();
        assert_eq!(answer, codec::PROTOCOL_HEADER, "answer to {header:?}");
    }
    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_get_the_spec_close_codes() {
    let gateway = InProcessGateway::start().await;

    // A frame larger than frame_max: FRAME_ERROR, before its payload is read.
    let mut raw = Raw::open(&gateway, 0).await;
    let mut oversized = vec![1u8, 0, 1];
    oversized.extend_from_slice(&(10_000_000u32).to_be_bytes());
    raw.stream.write_all(&oversized).await.unwrap();
    assert_eq!(raw.expect_connection_close().await, 501);

    // Content without a header: UNEXPECTED_FRAME.
    let mut raw = Raw::open(&gateway, 0).await;
    raw.open_channel(1).await;
    raw.send(&AMQPFrame::Body(1, b"orphan".to_vec())).await;
    assert_eq!(raw.expect_connection_close().await, 505);

    // A method on a channel never opened: CHANNEL_ERROR.
    let mut raw = Raw::open(&gateway, 0).await;
    raw.send(&queue_declare(5, "")).await;
    assert_eq!(raw.expect_connection_close().await, 504);

    // A method on a channel that was closed: CHANNEL_ERROR.
    let mut raw = Raw::open(&gateway, 0).await;
    raw.open_channel(1).await;
    raw.send(&AMQPFrame::Method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    ))
    .await;
    let close_ok = raw.next().await;
    assert!(matches!(
        close_ok,
        AMQPFrame::Method(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))
    ));
    raw.send(&queue_declare(1, "")).await;
    assert_eq!(raw.expect_connection_close().await, 504);

    // An unknown class and method: NOT_IMPLEMENTED.
    let mut raw = Raw::open(&gateway, 0).await;
    raw.open_channel(1).await;
    raw.stream
        .write_all(&[1, 0, 1, 0, 0, 0, 4, 0, 77, 0, 99, 0xCE])
        .await
        .unwrap();
    assert_eq!(raw.expect_connection_close().await, 540);

    // A content header for a publish whose method never came: UNEXPECTED_FRAME.
    let mut raw = Raw::open(&gateway, 0).await;
    raw.open_channel(1).await;
    raw.stream
        .write_all(&[
            2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xCE,
        ])
        .await
        .unwrap();
    assert_eq!(raw.expect_connection_close().await, 505);

    // A bad frame-end octet: FRAME_ERROR.
    let mut raw = Raw::open(&gateway, 0).await;
    raw.stream
        .write_all(&[8, 0, 0, 0, 0, 0, 0, 0x00])
        .await
        .unwrap();
    assert_eq!(raw.expect_connection_close().await, 501);

    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_frames_close_the_connection_and_the_gateway_keeps_serving() {
    let gateway = InProcessGateway::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..40 {
        // Heartbeats on: a stalled half frame is cut off after two silent seconds.
        let mut raw = Raw::open(&gateway, 1).await;
        raw.open_channel(1).await;
        // Random bytes, some starting with a plausible frame type to reach deeper parsing.
        let len = rng.random_range(1..2048);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 2 == 0 {
            junk[0] = rng.random_range(1..=4);
        }
        raw.stream.write_all(&junk).await.unwrap();
        // Whatever the server makes of it, it answers with a close or just closes, in time.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match codec::read_frame(&mut raw.stream, 1 << 20, &mut raw.buf).await {
                    Ok(AMQPFrame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::Close(c)),
                    )) => {
                        assert!(
                            [501, 502, 503, 504, 505, 530, 540].contains(&c.reply_code),
                            "round {round}: close code {}",
                            c.reply_code
                        );
                        let _ = raw.stream.read_to_end(&mut rest).await;
                        return;
                    }
                    Ok(_) => continue,
                    Err(_) => return,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "round {round}: the connection ends within 5 s"
        );
    }
    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_heartbeating_is_disconnected() {
    let gateway = InProcessGateway::start().await;
    let raw = Raw::open(&gateway, 1).await;
    let started = std::time::Instant::now();
    // Read whatever the server sends (its own heartbeats) until it closes the socket.
    let Raw {
        mut stream,
        mut buf,
    } = raw;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while codec::read_frame(&mut stream, 1 << 20, &mut buf)
            .await
            .is_ok()
        {}
    })
    .await;
    assert!(closed.is_ok(), "disconnected within 10 s");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_secs(5),
        "two missed intervals of 1 s: disconnected after {after:?}"
    );
    still_serving(&gateway).await;
}
