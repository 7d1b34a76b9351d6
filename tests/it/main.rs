//! One integration-test binary: real servers on port 0, real clients.

mod browser;
mod helpers;

mod account_mail;
mod accounts;
mod accounts_bad_paths;
mod address_limits;
mod api_keys;
mod client_ip;
mod clients;
mod crash;

mod cli;
mod db_outage;
mod discovery;
mod email;
mod health;
mod keys;
mod local_read;
mod logout;
mod mail_queue;
mod master_key;
mod metrics;
mod oidc;
mod oidc_rules;
mod own_postgres;
mod passkey_authenticator;
mod passkeys;
mod session_factors;
mod shutdown;
mod store_append;
mod store_files;
mod store_passkeys;
mod sweep;
mod throttle_race;
mod tokens;
mod totp_code;
mod two_factor;
