//! One MQTT connection to one broker (spec §2): a tokio shell around
//! [`keyway_core::mqtt::Session`], which makes every protocol decision.
//!
//! The session queues CONNECT (clean session, keep-alive) and SUBSCRIBE
//! (the node's own topic, QoS 1), checks CONNACK and SUBACK within one
//! deadline, answers inbound QoS 1 PUBLISHes with PUBACK, skips oversize
//! packets, numbers outbound PUBLISHes, pings every keep-alive period and
//! closes when a PINGRESP does not come back in time (the reference never
//! noticed a dead broker: spec §10 item 17). This file only moves bytes
//! between the session and the socket, and sleeps until its timers.
//!
//! Every write has a deadline ([`LinkConfig::write_timeout`], kept by the
//! session): a broker that completes the handshake and then stops reading
//! closes its link ([`BrokerLink::stalled`]) instead of wedging it, and
//! [`BrokerLink::try_publish`] never waits for a slow link.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keyway_core::mqtt::session::CONTROL_RESERVE;
use keyway_core::mqtt::{CloseReason, CommandError, Event, QoS, Session, SessionConfig};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::time::Instant as MachineInstant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout_at};

/// How a link behaves.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// MQTT keep-alive; a PINGREQ goes out this often.
    pub keep_alive: Duration,
    /// Connect, CONNACK and SUBACK must all complete within this.
    pub connect_timeout: Duration,
    /// Largest MQTT packet accepted from the broker.
    pub max_packet: usize,
    /// Every write to the socket (a batch of at most 64 KiB) must finish
    /// within this, or the link is closed as stalled: a broker that stops
    /// reading must not hold the node's frames (or its sends) for ever.
    pub write_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            max_packet: 64 * 1024,
            write_timeout: Duration::from_secs(5),
        }
    }
}

impl LinkConfig {
    fn session(&self) -> SessionConfig {
        SessionConfig {
            keep_alive: self.keep_alive,
            connect_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
            max_packet: self.max_packet,
        }
    }
}

/// Why a link could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {broker}: {source}")]
    Connect {
        broker: String,
        source: std::io::Error,
    },
    #[error("{broker} did not complete the MQTT handshake in time")]
    Timeout { broker: String },
    #[error("{broker} refused the connection or subscription ({what})")]
    Refused { broker: String, what: String },
    #[error("the link to {broker} is closed")]
    Closed { broker: String },
    #[error("the link to {broker} has a full queue")]
    Busy { broker: String },
}

/// A PUBLISH that arrived on a link.
#[derive(Debug)]
pub struct Inbound {
    /// Which link (the caller's own numbering).
    pub link: usize,
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A PUBLISH on its way to the link's task: topic then payload, in one
/// allocation.
#[derive(Debug)]
struct Outbound {
    bytes: Vec<u8>,
    topic_len: usize,
}

/// A live MQTT connection; cloning shares it. Dropping the last clone
/// ends it (with DISCONNECT).
#[derive(Clone, Debug)]
pub struct BrokerLink {
    broker: String,
    id: usize,
    outbound: mpsc::Sender<Outbound>,
    alive: watch::Receiver<bool>,
    /// Set when the link closed because a write missed its deadline.
    stalled: Arc<AtomicBool>,
    /// Set once the broker sent a packet after the handshake.
    heard: Arc<AtomicBool>,
}

/// PUBLISHes handed to the task and not yet in the session's queue.
const COMMAND_QUEUE: usize = 256;
/// The most written in one go (one syscall for many small PUBLISHes).
const WRITE_BATCH: usize = 64 * 1024;
/// The session's outbound queue, in bytes.
const OUTBOX: usize = 4 * WRITE_BATCH;
/// Room to read the packet id of an oversize QoS 1 PUBLISH behind the
/// longest topic, so that it can be acknowledged (see the session).
const MIN_INBOX: usize = 1 + 4 + 2 + 65_535 + 2;
const READ_CHUNK: usize = 8192;

impl BrokerLink {
    /// Connects to `broker` ("host:port"), subscribes to `topic` and starts
    /// forwarding its PUBLISHes to `inbound`, tagged with `link`.
    pub async fn connect(
        broker: &str,
        topic: &[u8],
        link: usize,
        config: &LinkConfig,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<Self, LinkError> {
        let name = broker.to_owned();
        let refused = |what: String| LinkError::Refused {
            broker: name.clone(),
            what,
        };
        let io = |source| LinkError::Connect {
            broker: name.clone(),
            source,
        };
        let origin = Instant::now();
        let client_id = Session::<Vec<u8>>::random_client_id(&mut UnwrapErr(getrandom::SysRng));
        let mut session = Session::new(
            MachineInstant::ZERO,
            config.session(),
            &client_id,
            vec![0u8; config.max_packet.max(MIN_INBOX)],
            vec![0u8; OUTBOX],
        )
        .map_err(|e| refused(e.to_string()))?;
        session
            .handle_subscribe(MachineInstant::ZERO, topic, QoS::AtLeastOnce)
            .map_err(|e| refused(e.to_string()))?;
        let deadline = origin + config.connect_timeout;
        let stream = timeout_at(deadline, TcpStream::connect(broker))
            .await
            .map_err(|_| LinkError::Timeout {
                broker: name.clone(),
            })?
            .map_err(io)?;
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        let mut shell = Shell {
            read,
            write,
            session,
            origin,
            chunk: vec![0u8; READ_CHUNK],
            tx: vec![0u8; WRITE_BATCH],
        };
        shell.session.handle_connected(shell.now());
        // The handshake: every step bounded by the session's deadline.
        loop {
            shell.flush().await.map_err(io)?;
            if let Some(reason) = shell.session.close_reason() {
                return Err(match reason {
                    CloseReason::Malformed(e) => io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e.to_string(),
                    )),
                    CloseReason::Refused(_) | CloseReason::ConnectionLost => {
                        refused(reason.to_string())
                    }
                    _ => LinkError::Timeout {
                        broker: name.clone(),
                    },
                });
            }
            if shell.session.is_established() {
                break;
            }
            match shell.wait(None).await.map_err(io)? {
                Wake::Read(n) => shell.receive(n, &mut |_, _| {}).await.map_err(io)?,
                Wake::Command(_) | Wake::Timer => {}
            }
        }
        let (outbound, commands) = mpsc::channel(COMMAND_QUEUE);
        let (alive_tx, alive) = watch::channel(true);
        let stalled = Arc::new(AtomicBool::new(false));
        let heard = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(
            shell,
            commands,
            inbound,
            link,
            (alive_tx, stalled.clone(), heard.clone()),
        ));
        Ok(Self {
            broker: name,
            id: link,
            outbound,
            alive,
            stalled,
            heard,
        })
    }

    /// The broker this link goes to.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// The number given at connect, which tags this link's [`Inbound`]s.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Whether the link is still up.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Resolves once the link is down (its task ended, [`Self::stalled`]
    /// and [`Self::heard`] final), so that a driver learns of the drop
    /// without polling [`Self::is_alive`]. Holds no share of the link:
    /// dropping every clone still ends it.
    pub fn down(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut alive = self.alive.clone();
        async move {
            // An error means the task is gone: down as well.
            let _ = alive.wait_for(|up| !*up).await;
        }
    }

    /// Whether the link closed because a write to the broker missed
    /// [`LinkConfig::write_timeout`] (the broker stopped reading).
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Whether the broker sent anything (a PUBLISH, a PINGRESP) after the
    /// handshake: a link that closes without ever having heard from its
    /// broker did not work, whatever closed it.
    pub fn heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    fn closed(&self) -> LinkError {
        LinkError::Closed {
            broker: self.broker.clone(),
        }
    }

    fn frame(&self, topic: &[u8], payload: &[u8]) -> Result<Outbound, LinkError> {
        if !self.is_alive() || topic.len() > usize::from(u16::MAX) {
            return Err(self.closed());
        }
        // Fixed header (at most 5), topic length, packet id: a PUBLISH the
        // session's queue can never hold is refused here, not queued.
        if 9 + topic.len() + payload.len() > OUTBOX - CONTROL_RESERVE {
            return Err(LinkError::Busy {
                broker: self.broker.clone(),
            });
        }
        let mut bytes = Vec::with_capacity(topic.len() + payload.len());
        bytes.extend_from_slice(topic);
        bytes.extend_from_slice(payload);
        Ok(Outbound {
            bytes,
            topic_len: topic.len(),
        })
    }

    /// Publishes `payload` on `topic` at QoS 1, waiting while the link's
    /// queue is full (at most until the link closes: a stalled write ends
    /// it within [`LinkConfig::write_timeout`]).
    pub async fn publish(&self, topic: &[u8], payload: &[u8]) -> Result<(), LinkError> {
        let frame = self.frame(topic, payload)?;
        self.outbound.send(frame).await.map_err(|_| self.closed())
    }

    /// [`Self::publish`] without waiting: a full queue (a broker far
    /// behind, or not reading) is [`LinkError::Busy`] and the frame is
    /// dropped, as a datagram would be; the caller's retransmission covers it.
    pub fn try_publish(&self, topic: &[u8], payload: &[u8]) -> Result<(), LinkError> {
        let frame = self.frame(topic, payload)?;
        self.outbound.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Busy {
                broker: self.broker.clone(),
            },
            mpsc::error::TrySendError::Closed(_) => self.closed(),
        })
    }
}

/// What woke the shell.
enum Wake {
    Read(usize),
    Command(Option<Outbound>),
    Timer,
}

/// The socket, the session and the shell's two buffers.
struct Shell {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    session: Session<Vec<u8>>,
    origin: Instant,
    chunk: Vec<u8>,
    tx: Vec<u8>,
}

/// The session's time: microseconds since the link's origin.
fn machine_time(origin: Instant) -> MachineInstant {
    let micros = origin.elapsed().as_micros();
    MachineInstant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// When to wake for the session's next timer (`None`: a year away).
fn wake_at(origin: Instant, at: Option<MachineInstant>) -> Instant {
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    at.and_then(|at| origin.checked_add(Duration::from_micros(at.as_micros())))
        .map_or(far, |at| at.min(far))
}

impl Shell {
    fn now(&self) -> MachineInstant {
        machine_time(self.origin)
    }

    /// Writes all the session has to send; says whether there was any.
    /// Each write races the session's timers, so a write the broker does
    /// not take ends at its deadline.
    async fn flush(&mut self) -> std::io::Result<bool> {
        let origin = self.origin;
        let mut wrote = false;
        while let Some(transmit) = self
            .session
            .poll_transmit(machine_time(origin), &mut self.tx)
        {
            let mut write = pin!(self.write.write_all(&self.tx[..transmit.len]));
            // Each timer that fires moves on or closes the session.
            loop {
                let wake = wake_at(origin, self.session.poll_timeout());
                tokio::select! {
                    written = &mut write => {
                        written?;
                        break;
                    }
                    () = sleep_until(wake) => {
                        self.session.handle_timeout(machine_time(origin));
                        if self.session.is_closed() {
                            return Ok(wrote);
                        }
                    }
                }
            }
            self.session.handle_written(machine_time(origin));
            wrote = true;
        }
        Ok(wrote)
    }

    /// Waits for bytes from the broker, a command (if `commands` is given)
    /// or the session's next timer, which it fires.
    async fn wait(
        &mut self,
        commands: Option<&mut mpsc::Receiver<Outbound>>,
    ) -> std::io::Result<Wake> {
        let wake = wake_at(self.origin, self.session.poll_timeout());
        let command = async {
            match commands {
                Some(commands) => commands.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = self.read.read(&mut self.chunk) => {
                let n = n?;
                if n == 0 {
                    self.session.handle_closed(machine_time(self.origin));
                }
                Ok(Wake::Read(n))
            }
            command = command => Ok(Wake::Command(command)),
            () = sleep_until(wake) => {
                self.session.handle_timeout(machine_time(self.origin));
                Ok(Wake::Timer)
            }
        }
    }

    /// Feeds the first `n` bytes of the read buffer to the session,
    /// handing each message to `deliver` and writing what it answers.
    async fn receive(
        &mut self,
        n: usize,
        deliver: &mut impl FnMut(&[u8], &[u8]),
    ) -> std::io::Result<()> {
        let mut at = 0;
        // Each round takes bytes, delivers messages or writes PUBACKs (which
        // frees room to read the packets behind them); a round with none of
        // these ends the loop. A queue full of PUBLISHes holds back a few
        // rounds' worth of PUBACKs at most; the bound is generous.
        for _ in 0..=2 * n + 64 {
            let took = self
                .session
                .handle_received(machine_time(self.origin), &self.chunk[at..n]);
            at += took;
            let mut delivered = false;
            while let Some(event) = self.session.poll_event() {
                if let Event::Message { topic, payload } = event {
                    deliver(topic, payload);
                    delivered = true;
                }
            }
            let wrote = self.flush().await?;
            if self.session.is_closed() || (took == 0 && !delivered && !wrote) {
                break;
            }
        }
        Ok(())
    }
}

/// Puts a PUBLISH into the session's queue; gives it back if the queue is
/// full (the caller flushes, then offers it again).
fn offer(shell: &mut Shell, next: Outbound, link: usize) -> Option<Outbound> {
    let (topic, payload) = next.bytes.split_at(next.topic_len);
    match shell
        .session
        .handle_publish(shell.now(), topic, QoS::AtLeastOnce, payload)
    {
        Ok(_) => None,
        Err(CommandError::Full) => Some(next),
        Err(e) => {
            tracing::debug!(error = %e, link, "publish dropped");
            None
        }
    }
}

async fn run(
    mut shell: Shell,
    mut commands: mpsc::Receiver<Outbound>,
    inbound: mpsc::Sender<Inbound>,
    link: usize,
    (alive, stalled, heard): (watch::Sender<bool>, Arc<AtomicBool>, Arc<AtomicBool>),
) {
    let mut deliver = |topic: &[u8], payload: &[u8]| {
        let message = Inbound {
            link,
            topic: topic.to_vec(),
            payload: payload.to_vec(),
        };
        // A full queue means the router is overwhelmed: drop, as UDP would.
        let _ = inbound.try_send(message);
    };
    let result: std::io::Result<()> = async {
        // A PUBLISH taken from the channel that the session's queue had no
        // room for; no more is taken until it fits.
        let mut held: Option<Outbound> = None;
        loop {
            if let Some(next) = held.take() {
                // The last flush emptied the queue, so it fits unless it
                // never can (which frame() refuses): it is not held twice.
                if offer(&mut shell, next, link).is_some() {
                    tracing::debug!(link, "publish dropped: larger than the queue");
                }
            }
            // What is already queued goes into the session together, and
            // out in few writes: a syscall per PUBLISH would dominate.
            for _ in 0..COMMAND_QUEUE {
                if held.is_some() {
                    break;
                }
                match commands.try_recv() {
                    Ok(next) => held = offer(&mut shell, next, link),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        // Every handle is gone: say goodbye.
                        shell.session.handle_disconnect(shell.now());
                        break;
                    }
                }
            }
            shell.flush().await?;
            heard.store(shell.session.heard(), Ordering::Relaxed);
            if shell.session.is_closed() {
                return Ok(());
            }
            if held.is_some() {
                // The flush emptied the queue: there is room for it now.
                continue;
            }
            match shell.wait(Some(&mut commands)).await? {
                Wake::Read(0) => {}
                Wake::Read(n) => shell.receive(n, &mut deliver).await?,
                Wake::Command(Some(next)) => held = offer(&mut shell, next, link),
                Wake::Command(None) => shell.session.handle_disconnect(shell.now()),
                Wake::Timer => {}
            }
        }
    }
    .await;
    heard.store(shell.session.heard(), Ordering::Relaxed);
    let reason = shell.session.close_reason();
    if reason == Some(CloseReason::WriteStalled) {
        stalled.store(true, Ordering::Relaxed);
    }
    tracing::debug!(?reason, error = ?result.err(), link, "broker link closed");
    let _ = alive.send(false);
}
