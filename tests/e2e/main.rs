//! End-to-end tests: a real server per test, driven over HTTP through `switchboard-client`.

mod admin;
mod bad_input;
mod bird;
mod client;
mod cluster;
mod concurrency;
mod console;
mod console_pages;
mod contract;
mod destinations;
mod guessing;
mod inspect;
mod keys;
mod lifecycle;
mod mudbase;
mod mudbase_sdk;
mod senders;
mod smpp;
mod textingline;
mod upstreams;
mod webhook_verify;
