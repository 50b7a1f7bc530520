//! Message kinds, directions, lifecycle statuses and error types.

use serde::{Deserialize, Serialize};

/// A string-valued enum: its wire and stored names, and (with the `openapi` feature) a schema
/// that lists those names. The schema is written here rather than derived: a derive does not
/// see a `serde(rename)` whose name comes from a macro, and would list the variants' Rust names.
macro_rules! string_enum {
    ($(#[doc = $doc:literal])+ $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
                let description = [$($doc),+].map(str::trim).join(" ");
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .description(Some(description))
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and shown name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stored name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// SMS or MMS.
    MessageKind {
        /// A text message.
        Sms = "sms",
        /// A multimedia message.
        Mms = "mms",
    }
}

string_enum! {
    /// Which way a message travels.
    Direction {
        /// From an application to a handset.
        Outbound = "outbound",
        /// From a handset to an application.
        Inbound = "inbound",
    }
}

string_enum! {
    /// Where a message is in its life. Each dialect maps these onto its own words.
    MessageStatus {
        /// Stored and charged; not yet queued.
        Accepted = "accepted",
        /// Waiting until its scheduled time.
        Scheduled = "scheduled",
        /// Waiting for the dispatcher.
        Queued = "queued",
        /// Taken by the upstream provider.
        Sent = "sent",
        /// Confirmed delivered to the handset.
        Delivered = "delivered",
        /// Failed; see its error type.
        Failed = "failed",
        /// The carrier could not deliver it.
        Undelivered = "undelivered",
        /// Not sent within its validity.
        Expired = "expired",
        /// Canceled before it was sent.
        Canceled = "canceled",
        /// Received from a handset.
        Received = "received",
    }
}

impl MessageStatus {
    /// Whether the message can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered
                | MessageStatus::Failed
                | MessageStatus::Undelivered
                | MessageStatus::Expired
                | MessageStatus::Canceled
                | MessageStatus::Received
        )
    }

    /// Where an outbound message in this status stands: on its way, taken by the provider, or
    /// failed for good.
    pub fn group(self) -> StatusGroup {
        match self {
            MessageStatus::Sent | MessageStatus::Delivered => StatusGroup::Sent,
            MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired | MessageStatus::Canceled => {
                StatusGroup::Failed
            }
            _ => StatusGroup::Pending,
        }
    }
}

/// The three ways an outbound message can stand, as request counts and statistics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusGroup {
    /// Not yet taken by the provider (accepted, scheduled, queued).
    Pending,
    /// Taken by the provider (sent, delivered).
    Sent,
    /// Failed for good (failed, undelivered, expired, canceled).
    Failed,
}

string_enum! {
    /// What a webhook event reports: a message entering a status, an inbound message, or an
    /// account's balance falling below its low-balance threshold.
    EventType {
        /// Stored and charged.
        Accepted = "message.accepted",
        /// Stored to be sent at its scheduled time.
        Scheduled = "message.scheduled",
        /// Taken by the upstream provider.
        Sent = "message.sent",
        /// Confirmed delivered to the handset.
        Delivered = "message.delivered",
        /// The carrier could not deliver it.
        Undelivered = "message.undelivered",
        /// Failed; see its error type.
        Failed = "message.failed",
        /// Not sent within its validity.
        Expired = "message.expired",
        /// Canceled before it was sent.
        Canceled = "message.canceled",
        /// Received from a handset.
        Inbound = "message.inbound",
        /// A charge took the account's SMS balance from at or above its low-balance threshold
        /// to below it.
        BalanceLow = "account.balance_low",
    }
}

impl EventType {
    /// The event a message entering `status` raises; none for `queued`, which every message
    /// passes through on its way out.
    pub fn for_status(status: MessageStatus) -> Option<Self> {
        Some(match status {
            MessageStatus::Accepted => EventType::Accepted,
            MessageStatus::Scheduled => EventType::Scheduled,
            MessageStatus::Queued => return None,
            MessageStatus::Sent => EventType::Sent,
            MessageStatus::Delivered => EventType::Delivered,
            MessageStatus::Failed => EventType::Failed,
            MessageStatus::Undelivered => EventType::Undelivered,
            MessageStatus::Expired => EventType::Expired,
            MessageStatus::Canceled => EventType::Canceled,
            MessageStatus::Received => EventType::Inbound,
        })
    }
}

string_enum! {
    /// Where a message came from: the API (dialect) that sent it, a handset, or the gateway's
    /// own keyword reply. Not stored: it follows from what is (see `MessageRecord::dialect`).
    Dialect {
        /// TextingLine's `POST /api/v1/messaging/message`.
        TextingLine = "textingline",
        /// Mudbase's multi-recipient send.
        Mudbase = "mudbase",
        /// A Bird channel.
        Bird = "bird",
        /// An ESME bound to the SMPP server.
        Smpp = "smpp",
        /// The gateway's automatic answer to a keyword (STOP, START, HELP).
        Reply = "reply",
        /// Received from a handset.
        Inbound = "inbound",
    }
}

string_enum! {
    /// Why a message failed: TextingLine's list.
    ErrorType {
        /// An unspecified error occurred during message processing.
        Unknown = "unknown",
        /// An internal platform error prevented the message from being sent.
        PlatformError = "platform_error",
        /// The upstream provider encountered an internal processing error.
        ProviderError = "provider_error",
        /// The destination number is invalid, unreachable, or not mobile.
        InvalidDestination = "invalid_destination",
        /// The sender identity is not valid or not authorized.
        InvalidSender = "invalid_sender",
        /// The destination number is blocked from receiving messages.
        DestinationBlocked = "destination_blocked",
        /// The recipient has opted out from receiving messages.
        OptedOut = "opted_out",
        /// The message content is invalid or exceeds allowed limits.
        InvalidContent = "invalid_content",
        /// The message could not be routed to the destination.
        RoutingError = "routing_error",
        /// The message was blocked due to geographic restrictions.
        GeographicRestriction = "geographic_restriction",
        /// The requested service type is not supported for this destination.
        ServiceRestricted = "service_restricted",
    }
}

impl ErrorType {
    /// The human-readable description used when nothing more specific is known.
    pub fn description(self) -> &'static str {
        match self {
            ErrorType::Unknown => "An unspecified error occurred during message processing.",
            ErrorType::PlatformError => "An internal platform error prevented the message from being sent.",
            ErrorType::ProviderError => "The upstream provider encountered an internal processing error.",
            ErrorType::InvalidDestination => "The destination number is invalid, unreachable, or not mobile.",
            ErrorType::InvalidSender => "The sender identity is not valid or not authorized.",
            ErrorType::DestinationBlocked => "The destination number is blocked from receiving messages.",
            ErrorType::OptedOut => "The recipient has opted out from receiving messages from this sender.",
            ErrorType::InvalidContent => "The message content is invalid or exceeds allowed limits.",
            ErrorType::RoutingError => "The message could not be routed to the destination.",
            ErrorType::GeographicRestriction => "The message was blocked due to geographic restrictions.",
            ErrorType::ServiceRestricted => "The requested service type is not supported for this destination.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(*s));
        }
        for e in ErrorType::ALL {
            assert_eq!(ErrorType::parse(e.as_str()), Some(*e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(ErrorType::ALL.len(), 11);
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(*e));
        }
        // Every event type but the account's balance event is a message entering a status.
        let raised: Vec<_> = MessageStatus::ALL.iter().filter_map(|s| EventType::for_status(*s)).collect();
        assert_eq!(raised.len(), EventType::ALL.len() - 1);
        assert!(!raised.contains(&EventType::BalanceLow));
        for d in Dialect::ALL {
            assert_eq!(Dialect::parse(d.as_str()), Some(*d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }
}
