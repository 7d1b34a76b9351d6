//! Graceful shutdown: after the stop signal a request already in flight
//! still gets its answer, a new connection is refused, and a request that
//! does not finish within `http.shutdown_grace_secs` does not hold the
//! process up past it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_request_in_flight_is_answered_after_the_signal,
    the_grace_period_bounds_the_wait
);

/// The head of a `POST /token` whose body (`grant_type=password`, 19
/// bytes) arrives in two parts.
const HEAD: &str = "POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 19\r\n\r\ngrant_type=";

async fn a_request_in_flight_is_answered_after_the_signal(backend: Backend) {
    let mut app = spawn_app_with(backend, |s| s.http.shutdown_grace_secs = 10).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(HEAD.as_bytes()).await.unwrap();
    // Let the server read the head: the request is in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.signal_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections from the signal on.
    assert!(
        TcpStream::connect(&address).await.is_err(),
        "a new connection is refused once the server stops"
    );
    stream.write_all(b"password").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    // No client authentication: the request was read whole and answered.
    assert!(
        answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(answer.contains("\"error\""), "{answer}");
    app.stopped().await;
}

async fn the_grace_period_bounds_the_wait(backend: Backend) {
    let mut app = spawn_app_with(backend, |s| s.http.shutdown_grace_secs = 1).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    // A body that never arrives.
    stream.write_all(HEAD.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    app.signal_stop();
    tokio::time::timeout(Duration::from_secs(10), app.stopped())
        .await
        .expect("the server stops");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "stopped after the 1 s grace, not before and not much later: {took:?}"
    );
    drop(stream);
}
