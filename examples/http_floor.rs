//! The HTTP floor behind `scripts/bench`: the fastest this machine answers a
//! `GET` with axum, hyper and tokio as Stepgate uses them, and nothing else.
//!
//! ```text
//! http_floor ADDR FILE    # serves FILE's bytes at GET / on ADDR
//! ```
//!
//! Same runtime (multi-thread, one worker per core it may use), same
//! `axum::serve`, same keep-alive HTTP/1.1; no middleware, no log, no
//! database. What Stepgate's discovery and JWKS reach beside this is what its
//! own layers cost; the rest is the framework, the kernel and the loopback
//! socket, which no change in Stepgate can remove.

use axum::Router;
use axum::http::header;
use axum::routing::get;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: http_floor ADDR FILE");
        std::process::exit(2);
    };
    let body: &'static [u8] = match std::fs::read(&file) {
        Ok(b) => b.leak(),
        Err(e) => {
            eprintln!("cannot read {file}: {e}");
            std::process::exit(1);
        }
    };
    let app = Router::new().route(
        "/",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("serve: {e}");
            std::process::exit(1);
        }
    });
}
