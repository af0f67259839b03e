//! Real Redis for the Redis store tests: a standalone `redis-server` and a 3-master cluster,
//! each on free loopback ports with its own temporary directory, stopped when dropped.
//!
//! The tests never skip: without `redis-server` (and `redis-cli` for the cluster) they fail and
//! say how to get them (`scripts/test` installs them).

use crate::support::TempDir;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_INSTALL: &str = "the Redis tests need redis-server and redis-cli on PATH: run \
     scripts/test, which installs them (or `apt-get install redis-server redis-tools`)";

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports that were free a moment ago (all held at once while they are chosen).
///
/// Chosen at random in 10000–19999, below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768 and up by default), and so is port + 10000, where a
/// Redis Cluster node listens for its bus: a port the kernel picked for `bind(0)` and that was
/// released again could be handed to the next outgoing connection of any test before the
/// server meant to listen on it had bound it ("Address already in use"), while ports below the
/// range are only ever taken by explicit binds like this one. Falls back to `bind(0)` when the
/// range leaves no room below it.
pub fn free_ports<const N: usize>() -> [u16; N] {
    const FIRST: u16 = 10_000;
    const BUS: u16 = 10_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let end = low.saturating_sub(BUS).min(FIRST + BUS);
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(N);
    let mut tries = 0;
    while listeners.len() < N && end > FIRST + 1_000 && tries < 1_000 {
        tries += 1;
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), FIRST..end);
        let bus_free = TcpListener::bind(("127.0.0.1", port + BUS)).is_ok();
        if let (true, Ok(l)) = (bus_free, TcpListener::bind(("127.0.0.1", port))) {
            listeners.push(l);
        }
    }
    while listeners.len() < N {
        listeners.push(TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"));
    }
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

fn require(binary: &str) {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{binary} not found: {HOW_TO_INSTALL}");
}

/// Sends one command over a fresh connection, with short timeouts.
pub fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    cmd.query(&mut conn)
}

/// Waits until every replica of the master on `port` holds all that the master had written
/// when this was called: at least one replica online, and each one's acknowledged offset at or
/// past the master's replication offset of the first look (replicas acknowledge every second).
/// Without it, a test that kills the master would depend on how far replication had got. The
/// target is fixed at the first look: under a steady write load the master's offset moves on
/// between two acknowledgements, and chasing it could wait forever.
pub async fn until_replicas_caught_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut target: Option<u64> = None;
    loop {
        let info: String = query(port, redis::cmd("INFO").arg("replication")).unwrap_or_default();
        let field = |line: &str, name: &str| -> Option<u64> {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        let master: Option<u64> = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:")?.trim().parse().ok());
        let replicas: Vec<&str> = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .collect();
        if target.is_none() {
            target = master;
        }
        if let Some(master) = target {
            if !replicas.is_empty()
                && replicas
                    .iter()
                    .all(|l| field(l, "offset").is_some_and(|o| o >= master))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the replicas of {port} did not catch up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    pub dir: TempDir,
    /// Extra arguments, `{port}` replaced by the port.
    extra: Vec<String>,
}

impl RedisServer {
    /// A standalone server without persistence on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A server with extra arguments (`{port}` stands for its port), retried on another port if
    /// the chosen one was taken meanwhile.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(free_port(), extra) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// A server on `port`, which the caller knows to be free.
    pub fn start_on(port: u16) -> RedisServer {
        Self::start_on_with(port, &[])
    }

    /// A server on `port` with extra arguments.
    pub fn start_on_with(port: u16, extra: &[&str]) -> RedisServer {
        Self::try_start(port, extra).unwrap_or_else(|e| panic!("redis-server did not start: {e}"))
    }

    fn try_start(port: u16, extra: &[&str]) -> Result<RedisServer, String> {
        require("redis-server");
        let mut server = RedisServer {
            port,
            child: None,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn log(&self) -> PathBuf {
        self.dir.0.join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|e| format!("log file: {e}"))?;
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(self.extra.iter().map(|a| a.replace("{port}", &port)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning redis-server: {e}; {HOW_TO_INSTALL}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match query::<String>(self.port, &redis::cmd("PING")) {
                Ok(pong) if pong == "PONG" => return Ok(()),
                // Up, and asking for the password it was started with.
                Err(e) if e.to_string().contains("NOAUTH") => return Ok(()),
                _ => {}
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.kill();
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                return Err(format!("port {}: {log}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command to this server.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        query(self.port, cmd).unwrap_or_else(|e| panic!("{cmd:?} on port {}: {e}", self.port))
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("server is running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (SIGKILL); without persistence its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new one on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn()
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters, without replicas or with one each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        Self::start_nodes(RedisServer::start_with)
    }

    /// A cluster on the given three ports, which the caller knows to be free.
    pub fn start_on(ports: [u16; 3]) -> RedisCluster {
        let mut ports = ports.into_iter();
        Self::start_nodes(|args| {
            RedisServer::start_on_with(ports.next().expect("three ports"), args)
        })
    }

    /// A cluster of three nodes that `start` launches with the cluster arguments it is given
    /// (plus its own, e.g. TLS), created over their plain ports.
    pub fn start_nodes(start: impl FnMut(&[&str]) -> RedisServer) -> RedisCluster {
        Self::create(start, 0, &[])
    }

    /// Three masters with one replica each (six nodes; `nodes[..3]` are the masters as
    /// created), failing a master over after one second without it (`cluster-node-timeout`).
    pub fn start_with_replicas() -> RedisCluster {
        let cluster = Self::create(
            RedisServer::start_with,
            1,
            &["--cluster-node-timeout", "1000"],
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes[3..] {
            loop {
                let info: String = node.query(redis::cmd("INFO").arg("replication"));
                if info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {} not in sync: {info}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    fn create(
        mut start: impl FnMut(&[&str]) -> RedisServer,
        replicas: usize,
        extra: &[&str],
    ) -> RedisCluster {
        require("redis-cli");
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes-{port}.conf",
        ];
        args.extend_from_slice(extra);
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas)).map(|_| start(&args)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("redis-cli: {e}; {HOW_TO_INSTALL}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info: String = node.query(redis::cmd("CLUSTER").arg("INFO"));
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster node {} not ok: {info}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// The seed-list URL statusd takes.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Whether the node on `port` is a master now (a replica promoted by a failover is).
    pub fn is_master(&self, port: u16) -> bool {
        query::<String>(port, redis::cmd("INFO").arg("replication"))
            .is_ok_and(|info| info.contains("role:master"))
    }

    /// The node that holds `key` (the others answer MOVED).
    pub fn node_for(&self, key: &str) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| query::<i64>(n.port, redis::cmd("EXISTS").arg(key)).is_ok_and(|e| e == 1))
            .unwrap_or_else(|| panic!("no node holds {key}"))
    }
}
