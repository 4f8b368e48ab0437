//! `Sharded<T>`: one `T` per core, each built and used on its own core; a key is routed to the
//! core that owns it by a stable hash, as Seastar's `sharded<T>` does.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corio_rt::{CoreHandle, CoreId};

use crate::spawn::{spawn_on_handle, RemoteError};

thread_local! {
    /// This core's instances of every live `Sharded`, by id.
    static INSTANCES: RefCell<HashMap<u64, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One `T` per core of the runtime.
///
/// The handle is `Send + Sync + Clone` and may be used from any core; each `T` stays on the core
/// that built it (it need not be `Send`). When the last handle is dropped, every core drops its
/// `T` at its next tick. Build it inside the runtime with [`new`](Self::new), or before
/// [`Runtime::run`](corio_rt::Runtime::run) with [`new_in`](Self::new_in) and hand a clone to
/// every core.
///
/// # What a call costs
/// [`with`](Self::with) and [`on`](Self::on) send one message to the owning core and wait for
/// its answer: a cross-core round trip, measured here at about 2 µs when the other core is
/// busy or spinning and 50 to 70 µs when it was parked (a wake-up in a VM). A call per item
/// (one word of a text, one key of a request) is therefore slow; instead
/// - send many items in one message per owning core with [`with_batch`](Self::with_batch),
/// - or read and write the current core's shard directly with [`local`](Self::local) (no
///   message), merging at the end with [`map_reduce`](Self::map_reduce).
///
/// Counting words one `with` per word took 24 s for a text that batched calls counted in
/// 0.12 s (examples/wordcount.rs does the batched version).
///
/// # Examples
/// ```
/// use std::collections::HashMap;
/// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
/// // Built before the run, handed to every core.
/// let counts = corio::mesh::Sharded::new_in(&rt, |_| HashMap::<String, u64>::new())?;
/// let totals = rt.run(move |core| {
///     let counts = counts.clone();
///     async move {
///         if core.0 != 0 {
///             return 0;
///         }
///         // One message per owning core, whatever the number of words.
///         let words: Vec<String> = ["a", "b", "a"].iter().map(|w| w.to_string()).collect();
///         counts
///             .with_batch(words, |w| w.as_str(), |map, words| {
///                 for word in words {
///                     *map.entry(word).or_default() += 1;
///                 }
///             })
///             .await
///             .unwrap();
///         counts.map_reduce(|_, map| map.values().sum::<u64>(), 0, |a, b| a + b).await.unwrap()
///     }
/// });
/// assert_eq!(totals[0], 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sharded<T: 'static> {
    inner: Arc<Inner>,
    _t: PhantomData<fn() -> T>,
}

struct Inner {
    id: u64,
    peers: Arc<[CoreHandle]>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let id = self.id;
        for peer in self.peers.iter() {
            let _ = peer.execute(Box::new(move || {
                INSTANCES.with(|instances| instances.borrow_mut().remove(&id));
            }));
        }
    }
}

impl<T: 'static> Clone for Sharded<T> {
    fn clone(&self) -> Sharded<T> {
        Sharded {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: 'static> Sharded<T> {
    /// Builds one `T` on every core of the current runtime with `factory(core)`.
    ///
    /// # Errors
    /// A [`RemoteError`] if a core has shut down or the factory panicked there.
    ///
    /// # Panics
    /// Outside a corio core.
    pub async fn new<F>(factory: F) -> Result<Sharded<T>, RemoteError>
    where
        F: Fn(CoreId) -> T + Send + Sync + 'static,
    {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let peers = corio_rt::peers();
        build_all::<T, F>(&peers, id, factory).await?;
        Ok(Sharded {
            inner: Arc::new(Inner { id, peers }),
            _t: PhantomData,
        })
    }

    /// Builds one `T` on every core of `runtime` with `factory(core)`, from outside it (before
    /// [`Runtime::run`](corio_rt::Runtime::run)); blocks until every core has built its `T`.
    /// The handle can then be cloned into each core's future.
    ///
    /// # Errors
    /// A [`RemoteError`] if a core has shut down or the factory panicked there.
    ///
    /// # Panics
    /// On a corio core (it would block the core it waits for): use [`new`](Self::new) there.
    #[track_caller]
    pub fn new_in<F>(runtime: &corio_rt::Runtime, factory: F) -> Result<Sharded<T>, RemoteError>
    where
        F: Fn(CoreId) -> T + Send + Sync + 'static,
    {
        assert!(
            corio_rt::try_current_core().is_none(),
            "Sharded::new_in blocks its thread: call it outside the runtime, or Sharded::new inside"
        );
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let peers: Arc<[CoreHandle]> = runtime.handles().into();
        // Core 0 drives the build (and its clean-up on failure) while this thread waits in
        // the runtime's own `run`.
        let (factory, builders) = (Arc::new(factory), peers.clone());
        let mut outcomes = runtime.run_each(move |core| {
            let (factory, peers) = (factory.clone(), builders.clone());
            async move {
                if core.0 != 0 {
                    return Ok(());
                }
                build_all::<T, _>(&peers, id, move |core| factory(core)).await
            }
        });
        match outcomes.swap_remove(0) {
            Ok(built) => built?,
            Err(_) => return Err(RemoteError::Shutdown(CoreId(0))),
        }
        Ok(Sharded {
            inner: Arc::new(Inner { id, peers }),
            _t: PhantomData,
        })
    }

    /// Runs `f` with the current core's `T`, here and now: no message, no await. For work
    /// that each core does on its own shard (count locally, merge later).
    ///
    /// # Panics
    /// Outside a core of this `Sharded`'s runtime, or if `f` calls `local` on the same
    /// `Sharded` again (the `T` is borrowed).
    ///
    /// # Examples
    /// ```
    /// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
    /// let hits = corio::mesh::Sharded::new_in(&rt, |_| 0u64)?;
    /// let handle = hits.clone();
    /// rt.run(move |_| {
    ///     let hits = handle.clone();
    ///     async move { hits.local(|n| *n += 5) }
    /// });
    /// let total = rt.run(move |core| {
    ///     let hits = hits.clone();
    ///     async move { hits.local(|n| *n) }
    /// });
    /// assert_eq!(total, vec![5, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn local<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let id = self.inner.id;
        let Some(core) = corio_rt::try_current_core() else {
            panic!("Sharded::local called outside a corio core");
        };
        assert!(
            self.inner
                .peers
                .get(core.0)
                .is_some_and(|peer| !peer.is_closed()),
            "Sharded::local on {core}, which is not a core of this Sharded's runtime"
        );
        with_local::<T, R>(id, f)
    }

    /// Sends `items` to the cores that own their keys, one message per core, and runs
    /// `f(&mut t, items_of_that_core)` there; returns each such core's result with its id, in
    /// core order. Cores that own none of the items get no message.
    ///
    /// # Errors
    /// The first core's [`RemoteError`].
    pub async fn with_batch<I, Q, KeyOf, F, R>(
        &self,
        items: impl IntoIterator<Item = I>,
        key_of: KeyOf,
        f: F,
    ) -> Result<Vec<(CoreId, R)>, RemoteError>
    where
        I: Send + 'static,
        Q: Hash + ?Sized,
        KeyOf: Fn(&I) -> &Q,
        F: Fn(&mut T, Vec<I>) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let mut per_core: Vec<Vec<I>> = (0..self.inner.peers.len()).map(|_| Vec::new()).collect();
        for item in items {
            let core = self.shard_of(key_of(&item));
            per_core[core.0].push(item);
        }
        let f = Arc::new(f);
        let id = self.inner.id;
        let calls = per_core
            .into_iter()
            .zip(self.inner.peers.iter())
            .filter(|(items, _)| !items.is_empty())
            .map(|(items, peer)| {
                let (f, core) = (f.clone(), peer.id());
                let call = spawn_on_handle(peer, move || async move {
                    with_local::<T, R>(id, move |t| f(t, items))
                });
                async move { call.await.map(|r| (core, r)) }
            });
        futures_util::future::try_join_all(calls).await
    }

    /// The core that owns `key`: a stable hash (SipHash with fixed keys) modulo the number of
    /// cores, the same on every core and every call.
    pub fn shard_of<K: Hash + ?Sized>(&self, key: &K) -> CoreId {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        CoreId((hasher.finish() % self.inner.peers.len() as u64) as usize)
    }

    /// Runs `f` with the `T` of the core that owns `key`, on that core, and returns its result.
    ///
    /// # Errors
    /// A [`RemoteError`] if that core has shut down or `f` panicked there.
    pub async fn with<K, F, R>(&self, key: &K, f: F) -> Result<R, RemoteError>
    where
        K: Hash + ?Sized,
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.on(self.shard_of(key), f).await
    }

    /// Runs `f` with core `core`'s `T`, on that core.
    ///
    /// # Errors
    /// As [`with`](Self::with); [`RemoteError::NoSuchCore`] for a core outside the runtime.
    pub async fn on<F, R>(&self, core: CoreId, f: F) -> Result<R, RemoteError>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let Some(peer) = self.inner.peers.get(core.0) else {
            return Err(RemoteError::NoSuchCore(core));
        };
        let id = self.inner.id;
        spawn_on_handle(peer, move || async move { with_local::<T, R>(id, f) }).await
    }

    /// Runs `f(core, &mut t)` on every core and gathers the results in core order.
    ///
    /// # Errors
    /// The first core's [`RemoteError`].
    pub async fn for_all<F, R>(&self, f: F) -> Result<Vec<R>, RemoteError>
    where
        F: Fn(CoreId, &mut T) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let f = Arc::new(f);
        let calls = self.inner.peers.iter().map(|peer| {
            let (f, id, core) = (f.clone(), self.inner.id, peer.id());
            spawn_on_handle(peer, move || async move {
                with_local::<T, R>(id, move |t| f(core, t))
            })
        });
        futures_util::future::try_join_all(calls).await
    }

    /// Maps every core's `T` with `map` (on its core) and folds the results here with `reduce`,
    /// starting from `init`, in core order.
    ///
    /// # Errors
    /// The first core's [`RemoteError`].
    pub async fn map_reduce<M, R, A, Red>(
        &self,
        map: M,
        init: A,
        reduce: Red,
    ) -> Result<A, RemoteError>
    where
        M: Fn(CoreId, &mut T) -> R + Send + Sync + 'static,
        R: Send + 'static,
        Red: FnMut(A, R) -> A,
    {
        Ok(self.for_all(map).await?.into_iter().fold(init, reduce))
    }
}

/// Builds instance `id` on every core of `peers`. If any core fails, waits for every other
/// build to end first, then removes the instances that were built, so none is left behind.
async fn build_all<T: 'static, F>(
    peers: &Arc<[CoreHandle]>,
    id: u64,
    factory: F,
) -> Result<(), RemoteError>
where
    F: Fn(CoreId) -> T + Send + Sync + 'static,
{
    let factory = Arc::new(factory);
    let builds = peers.iter().map(|peer| {
        let (factory, core) = (factory.clone(), peer.id());
        spawn_on_handle(peer, move || async move {
            let instance: Rc<dyn Any> = Rc::new(RefCell::new(factory(core)));
            INSTANCES.with(|instances| instances.borrow_mut().insert(id, instance));
        })
    });
    let results = futures_util::future::join_all(builds).await;
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(err) => {
            for peer in peers.iter() {
                let _ = peer.execute(Box::new(move || {
                    INSTANCES.with(|instances| instances.borrow_mut().remove(&id));
                }));
            }
            Err(err)
        }
    }
}

/// Runs `f` with this core's instance `id`.
fn with_local<T: 'static, R>(id: u64, f: impl FnOnce(&mut T) -> R) -> R {
    let instance = INSTANCES
        .with(|instances| instances.borrow().get(&id).cloned())
        .unwrap_or_else(|| {
            panic!("Sharded instance {id} missing on this core: the Sharded belongs to another runtime")
        });
    let cell = instance
        .downcast_ref::<RefCell<T>>()
        .unwrap_or_else(|| panic!("Sharded instance {id} has another type"));
    let mut t = cell.borrow_mut();
    f(&mut t)
}

impl<T: 'static> std::fmt::Debug for Sharded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded")
            .field("cores", &self.inner.peers.len())
            .finish()
    }
}
