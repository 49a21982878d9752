//! The loop that drives one [`Exchange`]: its transmits become leg tasks,
//! their bytes and failures and the timers go back in, and the owner
//! lookup it asks for runs as a second exchange.

use std::time::Duration;

use keyway_core::namebump::client::{
    Event, Exchange, Failure, LEGS, LegFault, Outcome, TRANSMIT_LEN, Transport,
};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::time::Instant;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::leg_socket::{LEG_REPORTS, LegInput, LegReport, LegTask};
use super::{Client, ClientError};

impl Client {
    /// comes back with the machine (which holds the reply).
    pub(super) async fn run(
        &self,
        mut exchange: Exchange,
    ) -> Result<(Exchange, Outcome), ClientError> {
        let origin = tokio::time::Instant::now();
        let now = || {
            Instant::from_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
        };
        let (reports, mut inbox) = mpsc::channel::<LegReport>(LEG_REPORTS);
        let mut tasks: [Option<AbortOnDropHandle<()>>; LEGS] = Default::default();
        let mut generations = [0u64; LEGS];
        let mut errors: [Option<std::io::Error>; LEGS] = Default::default();
        let mut rng = UnwrapErr(getrandom::SysRng);
        let mut buf = vec![0u8; TRANSMIT_LEN];
        loop {
            while let Some(event) = exchange.poll_event() {
                match event {
                    Event::CloseLeg(leg) => tasks[leg.index()] = None,
                    Event::LookupOwner => {
                        // A second exchange: the name's owner, if any.
                        let owner = match Box::pin(self.get(exchange.name())).await {
                            Ok(Some(record)) => Some(record.owner),
                            _ => None,
                        };
                        exchange.handle_lookup(now(), owner);
                    }
                    Event::Done(Outcome::Failed(failure)) => {
                        return Err(self.failure(failure, &mut errors));
                    }
                    Event::Done(outcome) => return Ok((exchange, outcome)),
                }
            }
            while let Some(transmit) =
                exchange.poll_transmit(now(), self.clock.now(), &mut rng, &mut buf)
            {
                let i = transmit.leg.index();
                generations[i] += 1;
                errors[i] = None;
                let Some(server) = self.address(transmit.leg.family) else {
                    continue;
                };
                let leg = LegTask {
                    leg: transmit.leg,
                    generation: generations[i],
                    server,
                    local: self.local_addr(server),
                    bind: self.config.source.is_some(),
                    request: buf[..transmit.len].to_vec(),
                    reports: reports.clone(),
                };
                tasks[i] = Some(AbortOnDropHandle::new(tokio::spawn(leg.run())));
            }
            if exchange.outcome().is_some() {
                continue;
            }
            let Some(deadline) = exchange.poll_timeout() else {
                // Only a finished exchange or a pending lookup has no timer,
                // and both were handled above.
                return Err(self.timeout(exchange.attempts()));
            };
            let wake = origin
                .checked_add(Duration::from_micros(deadline.as_micros()))
                .unwrap_or_else(|| origin + Duration::from_secs(86_400 * 365));
            tokio::select! {
                Some(report) = inbox.recv() => {
                    let i = report.leg.index();
                    if report.generation != generations[i] || tasks[i].is_none() {
                        continue;
                    }
                    match report.what {
                        LegInput::Bytes(bytes) => match report.leg.transport {
                            Transport::Udp => {
                                exchange.handle_datagram(now(), self.clock.now(), report.leg, &bytes)
                            }
                            Transport::Tcp => {
                                exchange.handle_stream(now(), self.clock.now(), report.leg, &bytes)
                            }
                        },
                        LegInput::Failed(e) => {
                            errors[i] = Some(e);
                            exchange.handle_leg_failed(now(), report.leg);
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => exchange.handle_timeout(now()),
            }
        }
    }

    fn failure(
        &self,
        failure: Failure,
        errors: &mut [Option<std::io::Error>; LEGS],
    ) -> ClientError {
        match failure {
            Failure::RejectedAtQuota => ClientError::RejectedAtQuota,
            Failure::WouldBump => ClientError::WouldBump,
            Failure::NotOwner => ClientError::NotOwner,
            Failure::ClockSkew { skew } => ClientError::ClockSkew { skew },
            Failure::ServerError => ClientError::ServerError,
            Failure::Timeout { attempts } => self.timeout(attempts),
            Failure::Network { leg, fault } => {
                let source = match (fault, errors[leg.index()].take()) {
                    (LegFault::Io, Some(e)) => e,
                    (LegFault::Io, None) => std::io::ErrorKind::UnexpectedEof.into(),
                    (LegFault::Unframeable, _) => std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the reply stream is not sealed to our reply key",
                    ),
                };
                ClientError::Network {
                    server: self
                        .address(leg.family)
                        .map_or_else(|| self.label.to_string(), |a| a.to_string()),
                    source,
                }
            }
            Failure::BadReply => ClientError::BadReply,
            Failure::InvalidInput(e) => e.into(),
        }
    }

    pub(super) fn timeout(&self, attempts: u32) -> ClientError {
        ClientError::Timeout {
            server: self.label.to_string(),
            attempts,
        }
    }
}
