//! The built-in simulator: a provider with deterministic outcomes for documented test numbers.
//!
//! Every recipient not listed below is accepted at once. The test numbers are:
//!
//! | recipient      | outcome                                                        |
//! |----------------|----------------------------------------------------------------|
//! | `+15550001001` | failed, `invalid_destination`                                  |
//! | `+15550001002` | failed, `destination_blocked`                                  |
//! | `+15550001003` | failed, `provider_error`                                       |
//! | `+15550001004` | failed, `routing_error`                                        |
//! | `+15550001005` | failed, `geographic_restriction`                               |
//! | `+15550001006` | failed, `service_restricted`                                   |
//! | `+15550001007` | failed, `invalid_content`                                      |
//! | `+15550001008` | failed, `invalid_sender`                                       |
//! | `+15550001009` | failed, `platform_error`                                       |
//! | `+15550001010` | failed, `unknown`                                              |
//! | `+15550001011` | failed, `opted_out` (the carrier reports the opt-out)          |
//! | `+15550002001` | accepted after the configured slow delay (2 s by default)     |
//! | `+15550002002` | a retryable `provider_error` on the first attempt, then accepted |
//! | `+15550002003` | a retryable `provider_error` on every attempt                  |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_domain::ErrorType;

use crate::{OutboundMessage, Provider, ProviderError, Submission, async_trait};

/// Test number: fails with `invalid_destination`.
pub const INVALID_DESTINATION: &str = "+15550001001";
/// Test number: accepted after the slow delay.
pub const SLOW: &str = "+15550002001";
/// Test number: retryable failure on the first attempt, then accepted.
pub const FLAKY: &str = "+15550002002";
/// Test number: retryable failure on every attempt.
pub const ALWAYS_RETRYABLE: &str = "+15550002003";

/// Settings of the simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// How long the slow test number takes to answer.
    pub slow_delay: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self { slow_delay: Duration::from_secs(2) }
    }
}

/// The simulator provider.
#[derive(Debug, Default)]
pub struct Simulator {
    config: SimulatorConfig,
    counter: AtomicU64,
}

impl Simulator {
    /// A simulator with these settings.
    pub fn new(config: SimulatorConfig) -> Self {
        Self { config, counter: AtomicU64::new(0) }
    }

    /// The fixed outcome of a failing test number, if the number is one.
    pub fn failure_for(recipient: &str) -> Option<ErrorType> {
        let code = recipient.strip_prefix("+155500010").filter(|c| c.len() == 2)?;
        let n: u32 = code.parse().ok()?;
        Some(match n {
            1 => ErrorType::InvalidDestination,
            2 => ErrorType::DestinationBlocked,
            3 => ErrorType::ProviderError,
            4 => ErrorType::RoutingError,
            5 => ErrorType::GeographicRestriction,
            6 => ErrorType::ServiceRestricted,
            7 => ErrorType::InvalidContent,
            8 => ErrorType::InvalidSender,
            9 => ErrorType::PlatformError,
            10 => ErrorType::Unknown,
            11 => ErrorType::OptedOut,
            _ => return None,
        })
    }
}

#[async_trait]
impl Provider for Simulator {
    fn name(&self) -> &str {
        "simulator"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        let to = message.to.as_str();
        if let Some(error_type) = Self::failure_for(to) {
            return Err(ProviderError::permanent(error_type));
        }
        match to {
            SLOW => tokio::time::sleep(self.config.slow_delay).await,
            FLAKY if message.attempt <= 1 => {
                return Err(ProviderError::retryable(ErrorType::ProviderError, "simulated transient upstream failure"));
            }
            ALWAYS_RETRYABLE => {
                return Err(ProviderError::retryable(ErrorType::ProviderError, "simulated transient upstream failure"));
            }
            _ => {}
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(Submission { provider_message_id: format!("sim-{}-{n}", message.id.as_uuid().simple()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::{Encoding, MessageId, MessageKind, Msisdn};

    fn msg(to: &str, attempt: u32) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::new(),
            to: Msisdn::parse(to).unwrap(),
            from: Msisdn::parse("+18005559876").unwrap(),
            kind: MessageKind::Sms,
            body: Some("hi".into()),
            media: Vec::new(),
            encoding: Encoding::Gsm7,
            segments: 1,
            attempt,
        }
    }

    #[tokio::test]
    async fn every_error_type_has_a_test_number() {
        let sim = Simulator::default();
        let mut seen = Vec::new();
        for n in 1..=11 {
            let to = format!("+155500010{n:02}");
            let err = sim.send(&msg(&to, 1)).await.unwrap_err();
            assert!(!err.retryable);
            seen.push(err.error_type);
        }
        for e in ErrorType::ALL {
            assert!(seen.contains(e), "{e} has no test number");
        }
        assert!(Simulator::failure_for("+15550001012").is_none());
        assert!(Simulator::failure_for("+18005551234").is_none());
    }

    #[tokio::test]
    async fn other_numbers_succeed_and_flaky_recovers() {
        let sim = Simulator::default();
        assert!(sim.send(&msg("+18005551234", 1)).await.is_ok());
        assert!(sim.send(&msg(FLAKY, 1)).await.unwrap_err().retryable);
        assert!(sim.send(&msg(FLAKY, 2)).await.is_ok());
        assert!(sim.send(&msg(ALWAYS_RETRYABLE, 5)).await.unwrap_err().retryable);
    }

    #[tokio::test]
    async fn slow_number_waits() {
        let sim = Simulator::new(SimulatorConfig { slow_delay: Duration::from_millis(50) });
        let start = std::time::Instant::now();
        assert!(sim.send(&msg(SLOW, 1)).await.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
