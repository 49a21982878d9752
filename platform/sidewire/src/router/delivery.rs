//! Where the handlers run. Handlers are plain (blocking) callbacks — the
//! Python wheel's take the GIL, the CLI's write to a pipe — so the driver
//! must never wait for one: its timers, ACKs and keep-alives would stop.
//! Yet handing every message to a parked thread costs the wake-up of
//! that thread's core, which on a 2-core VM with idle cores halted is
//! tens of µs of delivery latency (issue 13, BENCHMARKS.md).
//!
//! So a message is delivered in one of two ways, in delivery order:
//!
//! - **inline**, on the driver's thread, when no handler call is under
//!   way, none is queued, the last call returned promptly and the runtime
//!   is multi-threaded: the driver first goes on as a task of its own,
//!   then calls the handlers inside `block_in_place`, which hands the
//!   worker (with the new driver task) to another thread. A handler that
//!   blocks after all holds up only this thread, never the driver;
//! - **queued** for the handlers' thread otherwise (a bounded queue: the
//!   driver waits only while [`DELIVERY_QUEUE`] messages are queued).
//!
//! One handler call at a time (`busy`): a message is called inline only
//! when nothing is queued and no call is under way, and the thread takes
//! the next queued message only when no call is under way, so messages
//! reach the handlers in the order the node delivered them.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;

use super::Message;
use super::driver::Shared;

/// Delivered messages waiting for the handlers' thread: a slow handler
/// stops the driver (backpressure) only once this many are queued behind
/// it, instead of at once.
pub(super) const DELIVERY_QUEUE: usize = 1024;

/// A handler call that took longer than this sends the next messages to
/// the thread until a call is prompt again: a handler that keeps blocking
/// would otherwise move a runtime worker to another thread per message.
const PROMPT: Duration = Duration::from_millis(1);

struct State {
    queue: VecDeque<Message>,
    /// A handler call is under way (inline or on the thread).
    busy: bool,
    /// The last call took longer than [`PROMPT`].
    slow: bool,
    /// The driver is gone: the thread ends once the queue is empty.
    closed: bool,
    /// The thread could not be started: queued messages have no one to
    /// go to and are dropped.
    no_thread: bool,
    /// The driver's runtime, entered by the thread for each call: a
    /// handler sees the same context as when it is called inline.
    runtime: Option<Handle>,
}

/// The handlers' side of the driver; see the module documentation.
pub(super) struct Deliveries {
    state: Mutex<State>,
    /// Wakes the thread: a message is queued and no call is under way.
    ready: Condvar,
    /// Wakes the driver: the thread took a message from the queue.
    room: Notify,
    shared: Arc<Shared>,
}

/// The driver's handle: dropping it (the driver ended) ends the thread
/// once the queue is empty.
pub(super) struct Sender(Arc<Deliveries>);

/// A message the driver is to deliver inline (see [`Inline::call`]); the
/// call under way (`busy`) ends when this is dropped.
pub(super) struct Inline {
    deliveries: Arc<Deliveries>,
    message: Message,
    slow: bool,
}

impl Deliveries {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls every handler with `message`; a handler that panics loses
    /// that message only. Returns whether the calls took longer than
    /// [`PROMPT`].
    fn call(&self, message: &Message) -> bool {
        let handlers = self
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let started = Instant::now();
        for handler in handlers {
            if catch_unwind(AssertUnwindSafe(|| handler(message))).is_err() {
                tracing::error!("a sidewire message handler panicked");
            }
        }
        started.elapsed() > PROMPT
    }

    /// Ends a call: the next queued message may go.
    fn release(&self, slow: bool) {
        let mut s = self.lock();
        s.busy = false;
        s.slow = slow;
        if !s.queue.is_empty() {
            self.ready.notify_one();
        }
    }

    /// The thread's loop: queued messages, one call at a time.
    fn run(&self) {
        let mut s = self.lock();
        loop {
            if !s.busy
                && let Some(message) = s.queue.pop_front()
            {
                s.busy = true;
                let runtime = s.runtime.clone();
                drop(s);
                self.room.notify_one();
                let _entered = runtime.as_ref().map(Handle::enter);
                let slow = self.call(&message);
                s = self.lock();
                s.busy = false;
                s.slow = slow;
                continue;
            }
            if s.closed && s.queue.is_empty() {
                return;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Sender {
    /// Starts the handlers' thread.
    pub(super) fn start(shared: Arc<Shared>) -> Self {
        let deliveries = Arc::new(Deliveries {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                busy: false,
                slow: false,
                closed: false,
                no_thread: false,
                runtime: None,
            }),
            ready: Condvar::new(),
            room: Notify::new(),
            shared,
        });
        let thread = Arc::clone(&deliveries);
        let spawned = std::thread::Builder::new()
            .name("sidewire-handlers".into())
            .spawn(move || thread.run());
        if let Err(e) = spawned {
            // Messages are still called inline when they can be; say once
            // that the others are dropped.
            tracing::error!(error = %e, "cannot start the sidewire handlers' thread");
            deliveries.lock().no_thread = true;
        }
        Self(deliveries)
    }

    /// Hands `message` to the handlers: queued for the thread (waiting
    /// only while the queue is full), or returned to be called inline if
    /// `inline` allows it and nothing is ahead of it.
    pub(super) async fn offer(&self, message: Message, inline: bool) -> Option<Inline> {
        let runtime = Handle::try_current().ok();
        let inline = inline
            && runtime
                .as_ref()
                .is_some_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        loop {
            {
                let mut s = self.0.lock();
                if s.runtime.is_none() {
                    s.runtime.clone_from(&runtime);
                }
                if inline && !s.busy && !s.slow && s.queue.is_empty() {
                    s.busy = true;
                    return Some(Inline {
                        deliveries: Arc::clone(&self.0),
                        message,
                        slow: false,
                    });
                }
                if s.no_thread {
                    return None;
                }
                if s.queue.len() < DELIVERY_QUEUE {
                    s.queue.push_back(message);
                    if !s.busy {
                        self.0.ready.notify_one();
                    }
                    return None;
                }
            }
            // The thread stores a permit when it takes a message, so a
            // message taken since the check above is not missed.
            self.0.room.notified().await;
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_one();
    }
}

impl Inline {
    /// Calls the handlers on this thread, handing the runtime worker to
    /// another thread first, so that the tasks queued on it (the driver's
    /// above all) go on if a handler blocks. Call it from a task of a
    /// multi-threaded runtime only ([`Sender::offer`] checks: on a
    /// current-thread runtime it would block the only worker, and tokio
    /// panics).
    pub(super) fn call(mut self) {
        let deliveries = Arc::clone(&self.deliveries);
        self.slow = tokio::task::block_in_place(|| deliveries.call(&self.message));
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        self.deliveries.release(self.slow);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use keyway_core::Keypair;
    use keyway_core::rand_core::UnwrapErr;

    use super::*;
    use crate::router::Handler;

    static KEY: std::sync::LazyLock<Keypair> =
        std::sync::LazyLock::new(|| Keypair::generate(&mut UnwrapErr(getrandom::SysRng)));

    fn message(i: u32) -> Message {
        Message {
            from: *KEY.public(),
            data: i.to_be_bytes().to_vec(),
            queue_id: [0; 32],
        }
    }

    fn number(m: &Message) -> u32 {
        u32::from_be_bytes(m.data[..4].try_into().unwrap())
    }

    fn sender(handler: Handler) -> Sender {
        Sender::start(Arc::new(Shared {
            handlers: Mutex::new(vec![handler]),
            abandoned: Notify::new(),
            grace: Mutex::new(Duration::ZERO),
        }))
    }

    /// What the driver does with an inline message: goes on elsewhere
    /// (here: the offering task goes on) while the call runs on a worker.
    async fn offer(sender: &Sender, m: Message) {
        if let Some(call) = sender.offer(m, true).await {
            tokio::spawn(async move { call.call() });
        }
    }

    /// (number, called on the handlers' thread) for each call.
    type Calls = Arc<Mutex<Vec<(u32, bool)>>>;

    /// Records each call; every `slow_every`th takes longer than [`PROMPT`].
    fn recorder(slow_every: u32) -> (Handler, Calls) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let handler: Handler = Arc::new(move |m: &Message| {
            let n = number(m);
            if n.is_multiple_of(slow_every) {
                std::thread::sleep(PROMPT * 3);
            }
            let threaded = std::thread::current().name() == Some("sidewire-handlers");
            sink.lock().unwrap().push((n, threaded));
        });
        (handler, got)
    }

    async fn settled(got: &Mutex<Vec<(u32, bool)>>, n: usize) -> Vec<(u32, bool)> {
        for _ in 0..500 {
            if got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_and_queued_messages_reach_the_handler_in_order() {
        let (handler, got) = recorder(10);
        let sender = sender(handler);
        for i in 0..200 {
            offer(&sender, message(i)).await;
        }
        let got = settled(&got, 200).await;
        assert_eq!(
            got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (0..200).collect::<Vec<_>>()
        );
        assert!(!got[0].1, "the first message is called inline");
        assert!(got[1].1, "the one after a slow call goes to the thread");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_inline_call_never_holds_up_the_offers() {
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let sender = sender(Arc::new(move |m: &Message| {
            if number(m) == 0 {
                let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(30));
            }
            sink.lock().unwrap().push((number(m), false));
        }));
        offer(&sender, message(0)).await;
        // The first call is blocked: the next ones queue, at once.
        let queued = tokio::time::timeout(Duration::from_secs(5), async {
            for i in 1..=DELIVERY_QUEUE as u32 {
                offer(&sender, message(i)).await;
            }
        })
        .await;
        assert!(queued.is_ok(), "offers waited for a blocked handler");
        assert!(got.lock().unwrap().is_empty());
        release.send(()).unwrap();
        let got = settled(&got, DELIVERY_QUEUE + 1).await;
        assert_eq!(
            got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (0..=DELIVERY_QUEUE as u32).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_loses_its_message_only() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let sender = sender(Arc::new(move |m: &Message| {
            let n = number(m);
            assert!(n % 3 != 1, "the handler panics on {n}");
            sink.lock().unwrap().push((n, false));
        }));
        for i in 0..9 {
            offer(&sender, message(i)).await;
        }
        let got = settled(&got, 6).await;
        assert_eq!(
            got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![0, 2, 3, 5, 6, 8]
        );
    }

    /// On a current-thread runtime `block_in_place` would panic (and
    /// block the only worker): every message goes to the thread.
    #[tokio::test]
    async fn a_current_thread_runtime_always_uses_the_thread() {
        let (handler, got) = recorder(u32::MAX);
        let sender = sender(handler);
        for i in 0..20 {
            assert!(sender.offer(message(i), true).await.is_none());
        }
        let got = settled(&got, 20).await;
        assert_eq!(got.len(), 20);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (n, t))| *n == i as u32 && *t)
        );
    }
}
