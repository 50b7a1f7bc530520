//! The rules the operations apply, free of any database: what a group of messages admits
//! ([`admission`]), the running counts a status change moves ([`tally`]), the webhook
//! deliveries an event makes ([`outbox`]), when a charge crosses an account's low-balance
//! threshold ([`low_balance`]), how receipts settle a message ([`receipts`]), and the records
//! an inbound message stores ([`inbound`]). Each is decided here once and written
//! by the operations in `crate::ops`.

pub mod admission;
pub(crate) mod inbound;
pub mod low_balance;
pub(crate) mod outbox;
pub(crate) mod receipts;
pub(crate) mod tally;
