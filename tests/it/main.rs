//! One integration-test binary: real servers on port 0, real clients.

mod helpers;

mod cli;
mod discovery;
mod health;
mod keys;
