//! Redis Cluster's redirections followed inside the proxy, so they never reach the client:
//! MOVED retries at the named node (and patches the slot on this core until the next map),
//! ASK sends `ASKING` and the request to the named node (the map unchanged), TRYAGAIN retries
//! after a short pause. The session waits for each request's final reply in turn, so the
//! client's replies stay in request order whatever is redirected (a redirected request runs
//! after the later requests of its batch that needed no redirection, as with a cluster
//! client). Only a redirection for the request's own slot, to a node the cluster's map has
//! named, is followed: an error text a script returns (`redis.error_reply('MOVED ...')`)
//! reaches the client as it is and routes nothing. Spec: Redis Cluster's specification,
//! "MOVED Redirection" and "ASK redirection".

use std::rc::Rc;
use std::time::{Duration, Instant};

use corio::rt::time;

use crate::cluster::{self, Cause, Redirect};
use crate::flow::Held;
use crate::proxy::{Proxy, Router};
use crate::stats;
use crate::upstream::Reply;

/// Redirections followed for one request before the client gets an error.
const MAX_REDIRECTS: usize = 5;
/// The pause before a request answered TRYAGAIN is sent again.
const TRYAGAIN_PAUSE: Duration = Duration::from_millis(25);

/// `ASKING`, as RESP.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// How long a redirection to a node the map does not know yet waits for a refresh to name it.
const UNKNOWN_NODE_WAIT: Duration = Duration::from_millis(500);

/// A forwarded request kept to follow a redirection: its bytes, the slot of its keys (none
/// for a command without keys, which is never redirected), and the budget its copy takes.
pub(crate) struct Resend {
    pub(crate) request: Vec<u8>,
    pub(crate) slot: Option<u16>,
    pub(crate) _counted: crate::flow::Counted,
}

/// Follows the redirections of `reply` (the answer of `node` to `request`, whose keys are in
/// `slot`) until a reply that is not one, at most [`MAX_REDIRECTS`] times; a node that cannot
/// be reached or a CLUSTERDOWN asks for a new slot map.
pub(super) async fn follow(
    proxy: &Proxy,
    (held, resp3): (&Rc<Held>, bool),
    mut node: usize,
    mut reply: Reply,
    (request, slot): (&[u8], Option<u16>),
    deadline: Instant,
) -> Reply {
    // After an ASK, retries (TRYAGAIN) go to the importing node with ASKING again.
    let mut asking = false;
    for _ in 0..MAX_REDIRECTS {
        let redirect = match &reply {
            Err(_) => {
                cluster::request_refresh(Cause::NodeDown);
                return reply;
            }
            Ok(bytes) if bytes.starts_with(b"-CLUSTERDOWN") => {
                cluster::request_refresh(Cause::ClusterDown);
                return reply;
            }
            Ok(bytes) => match cluster::redirect(bytes) {
                // Only for this request's own slot: anything else is an error text the client
                // gets as it is (a script can return any).
                Some(redirect)
                    if slot.is_some() && redirect.slot().is_none_or(|s| Some(s) == slot) =>
                {
                    redirect
                }
                _ => return reply,
            },
        };
        stats::redirected(&redirect);
        let replied = proxy.upstream(node).addr;
        let target = match &redirect {
            Redirect::Moved(_, to) | Redirect::Ask(_, to) => {
                match known_node(to, replied, deadline).await {
                    Some(target) => target,
                    None => {
                        return Err(format!(
                            "ERR cannot follow a redirection to '{to}': the cluster's map does \
                             not name that node"
                        ))
                    }
                }
            }
            Redirect::TryAgain => node,
        };
        match redirect {
            Redirect::Moved(slot, _) => {
                if let Router::Cluster(view) = &proxy.router {
                    view.patch(slot, target);
                }
                cluster::request_refresh(Cause::Moved);
            }
            Redirect::Ask(..) => asking = true,
            Redirect::TryAgain => {
                if Instant::now() + TRYAGAIN_PAUSE >= deadline {
                    break;
                }
                time::sleep(TRYAGAIN_PAUSE).await;
            }
        }
        if matches!(redirect, Redirect::Moved(..)) {
            asking = false;
        }
        node = target;
        if asking {
            // Its reply (+OK) is dropped: nobody holds the slot. Nothing can be queued on the
            // connection between it and the request (no await in between).
            drop(proxy.upstream_for(node, resp3).send(ASKING, None, 0));
        }
        let slot = proxy.upstream_for(node, resp3).send(request, Some(held), 0);
        reply = super::answer::wait(proxy, (node, resp3), &slot, deadline).await;
    }
    match &reply {
        Ok(bytes) if cluster::redirect(bytes).is_some() => {
            let text = String::from_utf8_lossy(&bytes[1..]).trim_end().to_owned();
            Err(format!(
                "ERR too many cluster redirections (the last: {text})"
            ))
        }
        _ => reply,
    }
}

/// The number of the node a redirection names, if the cluster's map named it. A node the map
/// does not know yet (a node just added) gets a refresh and a short wait; nothing is resolved
/// by DNS here (that would block the core).
async fn known_node(
    target: &str,
    replied: std::net::SocketAddr,
    deadline: Instant,
) -> Option<usize> {
    let wait_until = (Instant::now() + UNKNOWN_NODE_WAIT).min(deadline);
    loop {
        match cluster::redirect_node(target, replied) {
            Ok(node) => return Some(node),
            Err(false) => return None, // not an address: a hostname or garbage
            Err(true) if Instant::now() >= wait_until => return None,
            Err(true) => {
                cluster::request_refresh(Cause::Moved);
                time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
