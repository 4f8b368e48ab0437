//! The commands the proxy answers itself: PING, ECHO, QUIT, COMMAND, RESET, SELECT, HELLO,
//! CLIENT, AUTH, and the section filter of INFO.

use crate::command::{self, LocalCmd};
use crate::resp;
use crate::Proxy;

use super::Client;

/// The commands a client may send before it has authenticated, as redis-server allows
/// (HELLO only with its AUTH option, checked in [`hello`]).
pub(super) fn allowed_before_auth(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"auth")
        || name.eq_ignore_ascii_case(b"quit")
        || name.eq_ignore_ascii_case(b"hello")
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Checks `user`'s `password`: the `default` user against `--requirepass` (no password needed
/// without one), others against `--user NAME:PASSWORD`. The error text when they do not match.
fn check(proxy: &Proxy, user: &[u8], password: &[u8]) -> Result<(), &'static str> {
    let ok = if user == b"default" {
        proxy
            .config
            .requirepass
            .as_deref()
            .is_none_or(|expected| expected.as_bytes() == password)
    } else {
        proxy
            .config
            .users
            .iter()
            .any(|(name, pass)| name.as_bytes() == user && pass.as_bytes() == password)
    };
    ok.then_some(()).ok_or(WRONGPASS)
}

/// `AUTH [username] password`: the `default` user against `--requirepass`, other users
/// against `--user NAME:PASSWORD` (checked by the proxy: the upstreams see the proxy's own
/// `--upstream-password`).
fn auth(proxy: &Proxy, client: &mut Client, out: &mut Vec<u8>, args: &[&[u8]]) {
    let (user, password) = match args {
        [_, password] => {
            if proxy.config.requirepass.is_none() {
                return resp::write_error(
                    out,
                    "ERR AUTH <password> called without any password configured for the \
                     default user. Are you sure your configuration is correct?",
                );
            }
            (&b"default"[..], *password)
        }
        [_, user, password] => (*user, *password),
        _ => return resp::write_error(out, "ERR syntax error"),
    };
    match check(proxy, user, password) {
        Ok(()) => {
            client.authenticated = true;
            client.user = String::from_utf8_lossy(user).into_owned();
            resp::write_simple(out, "OK");
        }
        Err(text) => resp::write_error(out, text),
    }
}

/// `RESET`, as redis-server: no name, database 0, no transaction, WATCH or pinned
/// connection, and unauthenticated again if a password is required.
pub(super) fn reset(proxy: &Proxy, client: &mut Client) {
    client.name = None;
    client.authenticated = proxy.config.requirepass.is_none();
    client.user = "default".to_owned();
    client.resp3 = false;
    client.pins.reset();
}

/// Answers the commands the proxy handles itself.
pub(super) fn local(proxy: &Proxy, client: &mut Client, cmd: LocalCmd, args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    match cmd {
        LocalCmd::Ping => match args.get(1) {
            Some(message) => resp::write_bulk(&mut out, message),
            None => resp::write_simple(&mut out, "PONG"),
        },
        LocalCmd::Echo => resp::write_bulk(&mut out, args[1]),
        LocalCmd::Quit => {
            client.closing = true;
            resp::write_simple(&mut out, "OK");
        }
        LocalCmd::Command => command_command(&mut out, args),
        LocalCmd::Reset => {
            reset(proxy, client);
            resp::write_simple(&mut out, "RESET");
        }
        LocalCmd::Select => match resp::parse_i64(args[1]) {
            Some(0) => resp::write_simple(&mut out, "OK"),
            Some(_) => resp::write_error(&mut out, "ERR DB index is out of range"),
            None => resp::write_error(&mut out, "ERR value is not an integer or out of range"),
        },
        LocalCmd::Hello => hello(proxy, client, &mut out, args),
        LocalCmd::Client => client_command(&mut out, client, args),
        // Routed to `Pending::Info` by `dispatch`, which gathers every core's counters.
        LocalCmd::Info => resp::write_error(&mut out, "ERR INFO is answered after gathering"),
        LocalCmd::Auth => auth(proxy, client, &mut out, args),
        LocalCmd::Acl => match (args[1].to_ascii_lowercase().as_slice(), args.len()) {
            (b"whoami", 2) => resp::write_bulk(&mut out, client.user.as_bytes()),
            (b"whoami", _) => resp::write_error(&mut out, &command::wrong_arity("acl|whoami")),
            _ => resp::write_error(
                &mut out,
                &format!(
                    "ERR command 'acl|{}' is not supported by this proxy: its users are its own \
                     (--requirepass, --user); administer each server's ACL directly",
                    command::sanitize(args[1]).to_ascii_lowercase()
                ),
            ),
        },
        // Handled by `pinned::intercept` before routing.
        LocalCmd::Transaction | LocalCmd::Subscribe => {
            resp::write_error(&mut out, "ERR command misrouted")
        }
    }
    out
}

/// The `# Section` blocks of an INFO text that `sections` names (any case), as redis-server
/// picks them: every section for `all` or `everything`; for none or `default`, all but
/// `commandstats` and `latencystats` (which redis-server leaves out of its default too), and
/// any named besides.
pub(super) fn info_sections(text: &str, sections: &[String]) -> String {
    if sections
        .iter()
        .any(|s| matches!(s.as_str(), "all" | "everything"))
    {
        return text.to_string();
    }
    let default = sections.is_empty() || sections.iter().any(|s| s == "default");
    let mut out = String::new();
    let mut keep = false;
    for line in text.split_inclusive("\r\n") {
        if let Some(name) = line.strip_prefix("# ") {
            let name = name.trim_end().to_ascii_lowercase();
            keep = sections.contains(&name)
                || (default && !matches!(name.as_str(), "commandstats" | "latencystats"));
        }
        if keep {
            out.push_str(line);
        }
    }
    out
}

/// `COMMAND [COUNT | LIST | INFO name... | DOCS name... | GETKEYS command args...]`: what
/// client libraries ask when they start. With a table learned from the upstream (see
/// `learned.rs`), entries are the upstream's own, for the commands the proxy does not refuse;
/// without one, redis-server's 10-field entries for the proxy's own table with the lists left
/// empty. A null stands for a command not served. DOCS gives an empty map. GETKEYS finds the
/// keys as the proxy routes them.
fn command_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let learned = crate::learned::table();
    let write_info = |out: &mut Vec<u8>, name: &[u8]| match learned {
        Some(table) => match table.get(name).filter(|c| !command::refused(&c.name)) {
            Some(command) => out.extend_from_slice(&command.raw),
            None => resp::write_null(out),
        },
        None => match command::info(name) {
            None => resp::write_null(out),
            Some(info) => {
                resp::write_array_len(out, 10);
                resp::write_bulk(out, info.name.as_bytes());
                resp::write_integer(out, i64::from(info.arity));
                resp::write_array_len(out, 0);
                resp::write_integer(out, info.keys.0);
                resp::write_integer(out, info.keys.1);
                resp::write_integer(out, info.keys.2);
                for _ in 0..4 {
                    resp::write_array_len(out, 0);
                }
            }
        },
    };
    let names: Vec<&[u8]> = match learned {
        Some(table) => table
            .iter()
            .filter(|c| !command::refused(&c.name))
            .map(|c| c.name.as_bytes())
            .collect(),
        None => command::served().map(|i| i.name.as_bytes()).collect(),
    };
    let Some(sub) = args.get(1) else {
        resp::write_array_len(out, names.len());
        for name in names {
            write_info(out, name);
        }
        return;
    };
    match &sub.to_ascii_lowercase()[..] {
        b"count" if args.len() == 2 => resp::write_integer(out, names.len() as i64),
        b"list" if args.len() == 2 => {
            resp::write_array_len(out, names.len());
            for name in names {
                resp::write_bulk(out, name);
            }
        }
        b"info" if args.len() == 2 => command_command(out, &args[..1]),
        b"info" => {
            resp::write_array_len(out, args.len() - 2);
            for name in &args[2..] {
                write_info(out, name);
            }
        }
        b"docs" => resp::write_array_len(out, 0),
        b"getkeys" if args.len() < 4 => {
            resp::write_error(out, &command::wrong_arity("command|getkeys"))
        }
        b"getkeys" => match command::key_positions(&args[2..]) {
            Ok(keys) => {
                resp::write_array_len(out, keys.len());
                for i in keys {
                    resp::write_bulk(out, args[2 + i]);
                }
            }
            Err(text) => resp::write_error(out, text),
        },
        _ => resp::write_error(
            out,
            &subcommand_error(
                "command",
                sub,
                &["count", "list", "info", "docs", "getkeys"],
            ),
        ),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`, as redis-server 7.0:
/// protocol 2 or 3 (a RESP3 client's requests then go over upstream connections that speak
/// RESP3, so its replies are RESP3 as the upstream makes them), authentication and a name in
/// one round trip. The reply is a map in RESP3, a flat array in RESP2.
fn hello(proxy: &Proxy, client: &mut Client, out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut proto = if client.resp3 { 3 } else { 2 };
    if let Some(version) = args.get(1) {
        match resp::parse_i64(version) {
            Some(v @ (2 | 3)) => proto = v,
            Some(_) => return resp::write_error(out, "NOPROTO unsupported protocol version"),
            None => {
                return resp::write_error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
    }
    let mut auth = None;
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        match &args[i].to_ascii_lowercase()[..] {
            b"auth" if more >= 2 => {
                auth = Some((args[i + 1], args[i + 2]));
                i += 3;
            }
            b"setname" if more >= 1 => {
                name = Some(args[i + 1]);
                i += 2;
            }
            _ => {
                let option = command::sanitize(args[i]);
                return resp::write_error(
                    out,
                    &format!("ERR Syntax error in HELLO option '{option}'"),
                );
            }
        }
    }
    match auth {
        Some((user, password)) => {
            if let Err(text) = check(proxy, user, password) {
                return resp::write_error(out, text);
            }
            client.authenticated = true;
            client.user = String::from_utf8_lossy(user).into_owned();
        }
        None if !client.authenticated => {
            return resp::write_error(
                out,
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            )
        }
        None => {}
    }
    if let Some(name) = name {
        if let Err(text) = check_name(name) {
            return resp::write_error(out, text);
        }
        client.name = (!name.is_empty()).then(|| name.to_vec());
    }
    client.resp3 = proto == 3;
    if client.resp3 {
        out.extend_from_slice(b"%7\r\n");
    } else {
        resp::write_array_len(out, 14);
    }
    for (key, value) in [
        ("server", "redis"),
        ("version", "7.0.0"),
        ("proto", ""),
        ("id", ""),
        ("mode", "standalone"),
        ("role", "master"),
        ("modules", ""),
    ] {
        resp::write_bulk(out, key.as_bytes());
        match key {
            "proto" => resp::write_integer(out, proto),
            "id" => resp::write_integer(out, 0),
            "modules" => resp::write_array_len(out, 0),
            _ => resp::write_bulk(out, value.as_bytes()),
        }
    }
}

/// A client name as redis-server accepts one (CLIENT SETNAME, HELLO SETNAME): printable ASCII
/// without spaces.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

/// `CLIENT SETNAME|GETNAME|SETINFO|ID`: what client libraries send when they connect.
fn client_command(out: &mut Vec<u8>, client: &mut Client, args: &[&[u8]]) {
    let sub = args[1].to_ascii_lowercase();
    match (&sub[..], args.len()) {
        (b"setname", 3) => {
            if let Err(text) = check_name(args[2]) {
                return resp::write_error(out, text);
            }
            client.name = (!args[2].is_empty()).then(|| args[2].to_vec());
            resp::write_simple(out, "OK");
        }
        (b"getname", 2) => match &client.name {
            Some(name) => resp::write_bulk(out, name),
            None => resp::write_null(out),
        },
        (b"setinfo", 4) => resp::write_simple(out, "OK"),
        (b"id", 2) => resp::write_integer(out, 0),
        _ => resp::write_error(
            out,
            &subcommand_error("client", args[1], &["setname", "getname", "setinfo", "id"]),
        ),
    }
}

/// redis-server's error for a subcommand of `container` the proxy does not run: the wrong
/// argument count of one it serves (`served`), the proxy's refusal of one the upstream has,
/// or redis-server's unknown-subcommand text.
fn subcommand_error(container: &str, sub: &[u8], served: &[&str]) -> String {
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let full = format!("{container}|{lower}");
    if served.contains(&lower.as_str()) {
        return command::wrong_arity(&full);
    }
    let args = [container.as_bytes(), sub];
    let upstream_has = crate::learned::table().is_some_and(|t| {
        t.lookup(&args)
            .ok()
            .flatten()
            .is_some_and(|c| c.name.contains('|'))
    });
    if upstream_has {
        return format!(
            "ERR command '{}' is not supported by this proxy: it is answered per server; \
             send it to each server directly",
            command::sanitize(full.as_bytes())
        );
    }
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        command::sanitize(&sub[..sub.len().min(128)]),
        container.to_ascii_uppercase()
    )
}
