//! Redis Cluster's redirections followed inside the proxy, so they never reach the client:
//! MOVED retries at the named node (and patches the slot on this core until the next map),
//! ASK sends `ASKING` and the request to the named node (the map unchanged), TRYAGAIN retries
//! after a short pause. The session waits for each request's final reply in turn, so the
//! client's replies stay in request order whatever is redirected. Spec: Redis Cluster's
//! specification, "MOVED Redirection" and "ASK redirection".

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

/// Follows the redirections of `reply` (the answer of `node` to `request`) until a reply
/// that is not one, at most [`MAX_REDIRECTS`] times; a node that cannot be reached or a
/// CLUSTERDOWN asks for a new slot map.
pub(super) async fn follow(
    proxy: &Proxy,
    held: &Rc<Held>,
    mut node: usize,
    mut reply: Reply,
    request: &[u8],
    deadline: Instant,
) -> Reply {
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
                Some(redirect) => redirect,
                None => return reply,
            },
        };
        stats::redirected(&redirect);
        let replied = proxy.upstream(node).addr;
        let target = match &redirect {
            Redirect::Moved(_, to) | Redirect::Ask(_, to) => {
                match cluster::redirect_node(to, replied) {
                    Some(target) => target,
                    None => return Err(format!("ERR cannot follow a redirection to '{to}'")),
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
            Redirect::Ask(..) => {
                // Its reply (+OK) is dropped: nobody holds the slot.
                drop(proxy.upstream(target).send(ASKING, None, 0));
            }
            Redirect::TryAgain => {
                if Instant::now() + TRYAGAIN_PAUSE >= deadline {
                    break;
                }
                time::sleep(TRYAGAIN_PAUSE).await;
            }
        }
        node = target;
        let slot = proxy.upstream(node).send(request, Some(held), 0);
        reply = super::wait(proxy, node, &slot, deadline).await;
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
