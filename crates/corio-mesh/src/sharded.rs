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

use crate::spawn::{run_on_all, spawn_on_handle, RemoteError};

thread_local! {
    /// This core's instances of every live `Sharded`, by id.
    static INSTANCES: RefCell<HashMap<u64, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One `T` per core of the runtime.
///
/// The handle is `Send + Sync + Clone` and may be used from any core; each `T` stays on the core
/// that built it (it need not be `Send`). When the last handle is dropped, every core drops its
/// `T` at its next tick.
///
/// # Examples
/// ```
/// use std::collections::HashMap;
/// let rt = corio_rt::Runtime::builder().cores(2).pin(false).build()?;
/// let totals = rt.run(|core| async move {
///     if core.0 != 0 {
///         return 0;
///     }
///     let counts = corio_mesh::Sharded::new(|_| HashMap::<String, u64>::new()).await.unwrap();
///     for word in ["a", "b", "a"] {
///         let key = word.to_owned();
///         counts.with(word, move |map| *map.entry(key).or_default() += 1).await.unwrap();
///     }
///     counts.map_reduce(|_, map| map.values().sum::<u64>(), 0, |a, b| a + b).await.unwrap()
/// });
/// assert_eq!(totals[0], 3);
/// # std::io::Result::Ok(())
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
        let factory = Arc::new(factory);
        run_on_all(move |core| {
            let factory = factory.clone();
            async move {
                let instance: Rc<dyn Any> = Rc::new(RefCell::new(factory(core)));
                INSTANCES.with(|instances| instances.borrow_mut().insert(id, instance));
            }
        })
        .await?;
        Ok(Sharded {
            inner: Arc::new(Inner {
                id,
                peers: corio_rt::peers(),
            }),
            _t: PhantomData,
        })
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

/// Runs `f` with this core's instance `id`.
fn with_local<T: 'static, R>(id: u64, f: impl FnOnce(&mut T) -> R) -> R {
    let instance = INSTANCES
        .with(|instances| instances.borrow().get(&id).cloned())
        .unwrap_or_else(|| panic!("Sharded instance {id} missing on this core"));
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
