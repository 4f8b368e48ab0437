//! The runtime: one thread per core, each pinned to its CPU and running its own event loop,
//! built by [`Builder`], fed futures by [`Runtime::run`], and joined on shutdown.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::core::Core;
use crate::driver::{DriverKind, FaultPlan, Poke};
use crate::executor::{Inbox, Job};
use crate::handle::CoreHandle;
use crate::metrics::Metrics;
use crate::run::{self, Outcome, RunError, Shared, StopHandle};
use crate::JoinError;

/// The index of a core in a [`Runtime`]: `0..cores`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoreId(pub usize);

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "core {}", self.0)
    }
}

/// Configures and starts a [`Runtime`].
///
/// # Examples
/// ```
/// let rt = corio::Runtime::builder().cores(2).pin(false).ring_entries(64).build()?;
/// let cores = rt.run(|core| async move { core.0 });
/// assert_eq!(cores, vec![0, 1]);
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    cores: usize,
    pin: bool,
    cpus: Option<Vec<usize>>,
    ring_entries: u32,
    spin: Duration,
    poke: Poke,
    name: String,
    faults: Option<FaultPlan>,
    driver: Option<DriverKind>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            cores: thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            cpus: None,
            ring_entries: 256,
            spin: Duration::ZERO,
            poke: Poke::default(),
            name: "corio".to_owned(),
            faults: None,
            driver: None,
        }
    }
}

impl Builder {
    /// Number of cores (threads, each with its own ring). Default: the CPUs this process may
    /// use. Values below 1 are raised to 1.
    pub fn cores(&mut self, cores: usize) -> &mut Builder {
        self.cores = cores.max(1);
        self
    }

    /// Whether to pin core `i` to the `i`-th CPU the thread calling [`build`](Self::build) may
    /// run on (its affinity mask, as `taskset` or `sched_setaffinity(2)` set it), wrapping
    /// around when there are more cores than CPUs. Default: true.
    ///
    /// A thread that was itself pinned to one CPU therefore puts every core on that CPU: build
    /// the runtime from an unpinned thread, or name the CPUs with [`cpus`](Self::cpus).
    pub fn pin(&mut self, pin: bool) -> &mut Builder {
        self.pin = pin;
        self
    }

    /// Pins core `i` to CPU `cpus[i % cpus.len()]`, CPUs numbered as the kernel numbers them
    /// (`/proc/cpuinfo`, `taskset -c`), whatever the building thread's own mask. Implies
    /// `pin(true)`.
    ///
    /// [`build`](Self::build) fails with `InvalidInput` if the list is empty or names a CPU
    /// number of 1024 or more, and with the pinning error if a CPU does not exist or this
    /// process may not run on it.
    ///
    /// # Examples
    /// ```
    /// let rt = corio::Runtime::builder().cores(1).cpus([0]).build()?;
    /// assert_eq!(rt.run(|core| async move { core.0 }), vec![0]);
    /// # std::io::Result::Ok(())
    /// ```
    pub fn cpus(&mut self, cpus: impl IntoIterator<Item = usize>) -> &mut Builder {
        self.cpus = Some(cpus.into_iter().collect());
        self.pin = true;
        self
    }

    /// SQ entries of each core's ring (the kernel rounds up to a power of two, clamped to
    /// 2..=32768); the CQ gets twice as many. More ops than this may be in flight: a full SQ
    /// is submitted and refilled. Default: 256.
    pub fn ring_entries(&mut self, entries: u32) -> &mut Builder {
        self.ring_entries = entries;
        self
    }

    /// How long an idle core polls for work (messages from other cores, I/O completions)
    /// before it parks in the ring. Waking a parked CPU takes tens of microseconds in a VM, so a
    /// short spin makes cross-core round trips much faster (measured here: 49 µs to 1.9 µs per
    /// `spawn_on` round trip with 50 µs), at the cost of that much CPU each time the core runs
    /// out of work, which other processes on the same CPU then miss. Default: zero (park at
    /// once).
    pub fn spin(&mut self, spin: Duration) -> &mut Builder {
        self.spin = spin;
        self
    }

    /// How a core wakes a parked core: an `IORING_OP_MSG_RING` from its own ring (default,
    /// falling back to the eventfd where it cannot be used) or always an eventfd write.
    pub fn poke(&mut self, poke: Poke) -> &mut Builder {
        self.poke = poke;
        self
    }

    /// Prefix of the threads' names (`{name}-{core}`). Default: `corio`.
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        self.name = name.into();
        self
    }

    /// Carries out `plan` on every core: completions turned into `ECANCELED`, `EAGAIN` or
    /// `EINTR`, short reads and writes, forced SQ-full and CQ-overflow paths, reordered CQEs,
    /// all drawn from the plan's seed (core `i` uses seed + `i`). For tests of code built on
    /// corio; never set by default. Without this call, a plan in `CORIO_FAULTS` is used.
    ///
    /// # Examples
    /// ```
    /// let plan = corio::rt::FaultPlan::transparent(1, 0.2);
    /// let rt = corio::Runtime::builder().cores(1).pin(false).faults(plan).build()?;
    /// assert_eq!(rt.run(|_| async { corio::rt::nop().await.is_ok() }), vec![true]);
    /// # std::io::Result::Ok(())
    /// ```
    pub fn faults(&mut self, plan: FaultPlan) -> &mut Builder {
        self.faults = Some(plan);
        self
    }

    /// Forces the driver every core runs on, over `CORIO_DRIVER` and the default (io_uring if
    /// it can be set up, else epoll): see [`DriverKind`]. With `DriverKind::IoUring`, a kernel
    /// or sandbox that blocks io_uring makes [`build`](Self::build) fail with the cause.
    ///
    /// # Examples
    /// ```
    /// use corio::rt::{DriverKind, Runtime};
    /// let rt = Runtime::builder().cores(1).pin(false).driver(DriverKind::Epoll).build()?;
    /// let echoed = rt.run(|_| async {
    ///     let listener = corio::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = listener.local_addr()?;
    ///     let client = corio::spawn(async move {
    ///         let stream = corio::net::TcpStream::connect(addr).await?;
    ///         let (res, _) = stream.write_all(b"hi".to_vec()).await;
    ///         res?;
    ///         let (n, buf) = stream.read(Vec::with_capacity(2)).await;
    ///         n?;
    ///         std::io::Result::Ok(buf)
    ///     });
    ///     let (server, _) = listener.accept().await?;
    ///     let (n, buf) = server.read(Vec::with_capacity(2)).await;
    ///     n?;
    ///     let (res, _) = server.write_all(buf).await;
    ///     res?;
    ///     client.await.unwrap()
    /// });
    /// assert_eq!(echoed[0].as_ref().unwrap(), b"hi");
    /// # std::io::Result::Ok(())
    /// ```
    pub fn driver(&mut self, kind: DriverKind) -> &mut Builder {
        self.driver = Some(kind);
        self
    }

    /// Starts every core and waits until each has set up its ring.
    ///
    /// # Errors
    /// If a thread cannot be spawned, pinning fails, or io_uring cannot be set up; the error
    /// names the cause and the fix (`kernel.io_uring_disabled`, a seccomp profile, the memlock
    /// limit, a kernel without io_uring). Cores already started are shut down first.
    /// `InvalidInput` if `CORIO_FAULTS` is set and does not parse.
    pub fn build(&self) -> io::Result<Runtime> {
        let faults = match &self.faults {
            Some(plan) => Some(plan.clone()),
            None => FaultPlan::from_env()?,
        };
        let cpus = match (&self.cpus, self.pin) {
            (Some(list), _) if list.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "Builder::cpus was given no CPU",
                ))
            }
            (Some(list), _) => {
                // A CPU number past the kernel's cpu_set_t (CPU_SETSIZE, 1024) would make the
                // affinity call index out of its mask.
                if let Some(bad) = list.iter().find(|&&id| id >= libc::CPU_SETSIZE as usize) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("Builder::cpus: no CPU {bad} (CPU numbers go up to 1023)"),
                    ));
                }
                list.iter()
                    .map(|&id| core_affinity::CoreId { id })
                    .collect()
            }
            (None, true) => core_affinity::get_core_ids()
                .filter(|ids| !ids.is_empty())
                .ok_or_else(|| io::Error::other("cannot list the CPUs to pin cores to"))?,
            (None, false) => Vec::new(),
        };
        let mut runtime = Runtime {
            cores: Vec::new(),
            shared: Arc::new(Shared::default()),
        };
        for index in 0..self.cores {
            let cpu = cpus.get(index % cpus.len().max(1)).copied();
            let faults = faults.clone().map(|plan| plan.for_core(index));
            runtime
                .cores
                .push(self.start_core(CoreId(index), cpu, faults)?);
        }
        // Tell every core who its peers are, before any work can reach it.
        let peers: Arc<[CoreHandle]> = runtime
            .cores
            .iter()
            .map(|core| CoreHandle::new(core.inbox.clone()))
            .collect();
        for core in &runtime.cores {
            let (peers, shared) = (peers.clone(), runtime.shared.clone());
            let job: Job = Box::new(move || {
                crate::handle::set_peers(peers);
                crate::context::with_core(|core| *core.runtime.borrow_mut() = Some(shared));
            });
            if core.inbox.push_job(job).is_err() {
                return Err(io::Error::other("a core stopped during start-up"));
            }
        }
        Ok(runtime)
    }

    fn start_core(
        &self,
        id: CoreId,
        cpu: Option<core_affinity::CoreId>,
        faults: Option<FaultPlan>,
    ) -> io::Result<CoreThread> {
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<Arc<Inbox>>>(1);
        let (entries, spin, poke, kind) = (self.ring_entries, self.spin, self.poke, self.driver);
        let thread = thread::Builder::new()
            .name(format!("{}-{}", self.name, id.0))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if !core_affinity::set_for_current(cpu) {
                        let err = io::Error::other(format!("cannot pin {id} to CPU {}", cpu.id));
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                }
                let core = match Core::with_driver(id, entries, faults, kind) {
                    Ok(core) => core,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                core.spin.set(spin);
                if poke == Poke::MsgRing {
                    core.use_msg_ring();
                }
                let _ = ready_tx.send(Ok(core.inbox().clone()));
                core.run_until_stopped();
            })?;
        let inbox = match ready_rx.recv() {
            Ok(Ok(inbox)) => inbox,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other(format!("{id} exited during start-up")));
            }
        };
        Ok(CoreThread {
            inbox,
            thread: Some(thread),
        })
    }
}

/// Core `core`'s value from a `run_with` list; each core takes its own exactly once per run.
fn take<V>(values: &[std::sync::Mutex<Option<V>>], core: CoreId) -> V {
    values[core.0]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
        .unwrap_or_else(|| unreachable!("each core's factory runs once per run"))
}

struct CoreThread {
    inbox: Arc<Inbox>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A set of cores, one pinned thread and one io_uring each.
///
/// Dropping the runtime stops every core (tasks still running are dropped, ops still in flight
/// cancelled) and joins every thread.
pub struct Runtime {
    cores: Vec<CoreThread>,
    pub(crate) shared: Arc<Shared>,
}

impl Runtime {
    /// A builder with the defaults: one core per CPU, pinned, 256-entry rings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Runs `factory(core)` on every core, each future as a task of that core, and returns the
    /// outputs in core order once all have finished.
    ///
    /// The factory is `Send + Sync` (it crosses to each core's thread); the futures it builds
    /// may be `!Send`. Tasks they spawn keep running after `run` returns, until shutdown.
    ///
    /// `run` does not look inside the outputs: for futures that return `Result`, use
    /// [`try_run`](Self::try_run), which ends the run at the first `Err` (a server's core that
    /// fails to bind would otherwise leave `run` waiting on the cores that serve).
    ///
    /// # Panics
    /// At once if a core's future (or the factory) panics: the other cores' futures are
    /// cancelled, then the panic is resumed here (the panic hook has already printed it, naming
    /// the core's thread). Also if the run was ended by [`stop`](crate::stop) before every
    /// core finished (use `try_run` to handle that), or if a core has shut down.
    pub fn run<F, Fut>(&self, factory: F) -> Vec<Fut::Output>
    where
        F: Fn(CoreId) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let (mut outcomes, first_failure) = run::drive(self, factory, |_| false, true);
        // The panic explains the cancellations it caused: resume it first.
        if let Some(index) = first_failure {
            if let Outcome::Panicked(payload) = outcomes.swap_remove(index) {
                std::panic::resume_unwind(payload);
            }
        }
        let stopped = self.stop_handle().is_stopped();
        let mut outputs = Vec::with_capacity(outcomes.len());
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Outcome::Done(output) => outputs.push(output),
                _ if stopped => panic!(
                    "Runtime::run: the runtime was stopped before core {index} finished \
                     (try_run returns RunError::Stopped instead)"
                ),
                _ => panic!("Runtime::run: core {index} shut down before its future finished"),
            }
        }
        outputs
    }

    /// Runs `factory(core)` on every core, as [`run`](Self::run) does, for futures that return
    /// `Result`: the first core whose future returns `Err` or panics ends the run at once. The
    /// other cores' futures are cancelled (dropped on their cores), and `try_run` returns which
    /// core failed and why. With every core `Ok`, the outputs in core order.
    ///
    /// # Errors
    /// - [`RunError::Failed`] with the first core's `Err`;
    /// - [`RunError::Panicked`] with the first panic's message;
    /// - [`RunError::Stopped`] if [`stop`](crate::stop) or a [`StopHandle`] ended the run
    ///   before every core finished, or a core had shut down.
    ///
    /// # Examples
    /// A server on every core whose core 1 cannot start: the run ends with core 1's error while
    /// core 0 would serve forever.
    /// ```
    /// use std::io;
    /// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
    /// let result = rt.try_run(|core| async move {
    ///     if core.0 == 1 {
    ///         return Err(io::Error::new(io::ErrorKind::AddrInUse, "cannot bind"));
    ///     }
    ///     std::future::pending::<io::Result<()>>().await
    /// });
    /// let err = result.unwrap_err();
    /// assert_eq!(err.core(), Some(corio::CoreId(1)));
    /// assert_eq!(err.to_string(), "core 1 failed: cannot bind");
    /// # io::Result::Ok(())
    /// ```
    pub fn try_run<F, Fut, T, E>(&self, factory: F) -> Result<Vec<T>, RunError<E>>
    where
        F: Fn(CoreId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (mut outcomes, first_failure) = run::drive(self, factory, Result::is_err, true);
        if let Some(index) = first_failure {
            let core = CoreId(index);
            return Err(match outcomes.swap_remove(index) {
                Outcome::Done(Err(error)) => RunError::Failed { core, error },
                Outcome::Panicked(payload) => RunError::Panicked {
                    core,
                    message: run::message(payload.as_ref()),
                },
                _ => unreachable!("the first failure is an Err or a panic"),
            });
        }
        let mut outputs = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Outcome::Done(Ok(output)) => outputs.push(output),
                _ => return Err(RunError::Stopped),
            }
        }
        Ok(outputs)
    }

    /// Runs `factory(core)` on every core and lets each finish on its own: a core that fails or
    /// panics does not stop the others. Returns each core's output or why it has none
    /// ([`JoinError::Panic`](crate::JoinError::Panic), or
    /// [`JoinError::Cancelled`](crate::JoinError::Cancelled) after [`stop`](crate::stop)),
    /// in core order.
    ///
    /// # Examples
    /// ```
    /// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
    /// let results = rt.run_each(|core| async move {
    ///     assert!(core.0 == 0, "only core 0 works");
    ///     core.0
    /// });
    /// assert_eq!(*results[0].as_ref().unwrap(), 0);
    /// assert!(results[1].as_ref().unwrap_err().is_panic());
    /// # std::io::Result::Ok(())
    /// ```
    pub fn run_each<F, Fut>(&self, factory: F) -> Vec<Result<Fut::Output, JoinError>>
    where
        F: Fn(CoreId) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        run::drive(self, factory, |_| false, false)
            .0
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Done(output) => Ok(output),
                Outcome::Panicked(payload) => Err(JoinError::Panic(payload)),
                Outcome::Cancelled => Err(JoinError::Cancelled),
            })
            .collect()
    }

    /// [`run`](Self::run) with an owned value for each core: core `i` gets `values[i]` (a
    /// listener bound before start, a channel end, a shard of data), moved to its thread.
    ///
    /// # Panics
    /// If `values` does not hold exactly one value per core; otherwise as `run`.
    ///
    /// # Examples
    /// ```
    /// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
    /// let names = vec![String::from("left"), String::from("right")];
    /// let lens = rt.run_with(names, |_core, name| async move { name.len() });
    /// assert_eq!(lens, vec![4, 5]);
    /// # std::io::Result::Ok(())
    /// ```
    #[track_caller]
    pub fn run_with<V, F, Fut>(&self, values: Vec<V>, factory: F) -> Vec<Fut::Output>
    where
        V: Send + 'static,
        F: Fn(CoreId, V) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let values = self.per_core(values);
        self.run(move |core| factory(core, take(&values, core)))
    }

    /// [`try_run`](Self::try_run) with an owned value for each core, as
    /// [`run_with`](Self::run_with) hands them out.
    ///
    /// # Errors
    /// As `try_run`.
    ///
    /// # Panics
    /// If `values` does not hold exactly one value per core.
    ///
    /// # Examples
    /// One listener per core, bound before the runtime starts so that a taken port is an error
    /// before anything runs:
    /// ```no_run
    /// use corio::net::{reuseport_listeners, TcpListener};
    /// let listeners = reuseport_listeners("127.0.0.1:7000".parse().unwrap(), 2)?;
    /// let rt = corio::Runtime::builder().cores(2).build()?;
    /// rt.try_run_with(listeners, |_core, listener| async move {
    ///     let listener = TcpListener::from_std(listener)?;
    ///     loop {
    ///         let (stream, _peer) = listener.accept().await?;
    ///         drop(stream);
    ///     }
    ///     #[allow(unreachable_code)]
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::io::Result::Ok(())
    /// ```
    #[track_caller]
    pub fn try_run_with<V, F, Fut, T, E>(
        &self,
        values: Vec<V>,
        factory: F,
    ) -> Result<Vec<T>, RunError<E>>
    where
        V: Send + 'static,
        F: Fn(CoreId, V) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let values = self.per_core(values);
        self.try_run(move |core| factory(core, take(&values, core)))
    }

    #[track_caller]
    fn per_core<V>(&self, values: Vec<V>) -> Vec<std::sync::Mutex<Option<V>>> {
        assert_eq!(
            values.len(),
            self.cores(),
            "Runtime::run_with: {} values for {} cores (one value per core)",
            values.len(),
            self.cores()
        );
        values
            .into_iter()
            .map(|v| std::sync::Mutex::new(Some(v)))
            .collect()
    }

    /// A handle that stops this runtime's runs from any thread; see [`stop`](crate::stop).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Handles to every core, in core order, for sending them work from any thread.
    pub fn handles(&self) -> Vec<CoreHandle> {
        self.cores
            .iter()
            .map(|core| CoreHandle::new(core.inbox.clone()))
            .collect()
    }

    /// A snapshot of every core's counters, in core order, read without disturbing the cores.
    ///
    /// # Examples
    /// ```
    /// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
    /// rt.run(|_| async { corio::rt::nop().await.unwrap() });
    /// let metrics = rt.metrics();
    /// assert_eq!(metrics.len(), 2);
    /// assert!(metrics.iter().all(|m| m.cqes_reaped >= 1));
    /// # std::io::Result::Ok(())
    /// ```
    pub fn metrics(&self) -> Vec<Metrics> {
        self.cores
            .iter()
            .map(|core| core.inbox.counters.snapshot(core.inbox.core))
            .collect()
    }

    /// Stops every core and joins its thread. Same as dropping the runtime.
    pub fn shutdown(self) {}
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for core in &self.cores {
            core.inbox.stop();
        }
        for core in &mut self.cores {
            if let Some(thread) = core.thread.take() {
                let _ = thread.join();
            }
        }
        debug_assert!(self
            .cores
            .iter()
            .all(|c| c.inbox.stopping.load(Ordering::SeqCst)));
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("cores", &self.cores.len())
            .finish()
    }
}
