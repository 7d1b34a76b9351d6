//! One integration-test binary: real servers on port 0, real clients.

mod helpers;

mod cli;
mod discovery;
mod email;
mod health;
mod keys;
