//! Starting and stopping the control plane's processes, in order, each waited for.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;

use super::certs;

/// How long each component may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// Set on SIGTERM, SIGINT or stdin EOF.
#[derive(Clone)]
pub struct StopFlag(Arc<(Mutex<bool>, Condvar)>);

impl StopFlag {
    /// Blocks SIGTERM and SIGINT in this (the main) thread — and so in every thread started
    /// after — and waits for them on a thread of their own. Call before any other thread.
    pub fn install() -> anyhow::Result<Self> {
        let flag = StopFlag(Arc::new((Mutex::new(false), Condvar::new())));
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().context("cannot block SIGTERM/SIGINT")?;
        let f = flag.clone();
        std::thread::spawn(move || {
            if set.wait().is_ok() {
                f.raise();
            }
        });
        Ok(flag)
    }

    pub fn raise(&self) {
        let (m, c) = &*self.0;
        if let Ok(mut v) = m.lock() {
            *v = true;
            c.notify_all();
        }
    }

    pub fn wait(&self) {
        let (m, c) = &*self.0;
        let Ok(mut v) = m.lock() else { return };
        while !*v {
            match c.wait(v) {
                Ok(g) => v = g,
                Err(_) => return,
            }
        }
    }
}

/// What the READY line reports.
#[derive(Debug, Serialize)]
pub struct Info {
    /// Admin kubeconfig (a static token in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// etcd's client URL (`http://127.0.0.1:PORT`), e.g. to compact it.
    pub etcd: String,
    /// The CA that signed the API server's certificate.
    pub ca: PathBuf,
    /// The admin bearer token.
    pub token: String,
    /// The kwok node names.
    pub nodes: Vec<String>,
    /// The working directory (logs under `logs/`).
    pub dir: PathBuf,
    /// The API server's audit log (JSON lines, one per request, metadata level).
    pub audit: PathBuf,
    /// pid per component.
    pub pids: Vec<(String, u32)>,
}

pub struct Options {
    pub nodes: u32,
    pub workloads: bool,
    pub apiserver_args: Vec<String>,
}

pub struct Plane {
    bin: PathBuf,
    dir: PathBuf,
    children: Vec<(String, Child)>,
    /// How each child was started, to restart it.
    commands: Vec<(String, PathBuf, Vec<String>)>,
    kubeconfig: Option<PathBuf>,
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `kubectl --kubeconfig KC ARGS` exits 0 (output discarded).
fn kubectl_succeeds(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> bool {
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGTERM to `child`.
fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
}

/// Waits for `child` until `deadline`, then SIGKILLs it.
fn wait_or_kill(child: &mut Child, deadline: Instant) {
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A plain-HTTP GET on 127.0.0.1; true on a 200.
fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let n = s.read(&mut head).unwrap_or(0);
    head[..n].starts_with(b"HTTP/1.1 200") || head[..n].starts_with(b"HTTP/1.0 200")
}

impl Plane {
    pub fn new(bin: PathBuf, dir: PathBuf) -> Self {
        Plane {
            bin,
            dir,
            children: Vec::new(),
            commands: Vec::new(),
            kubeconfig: None,
        }
    }

    fn tool(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.bin.join(name);
        if !p.is_file() {
            bail!(
                "{} is missing: run scripts/setup-kube.sh (it builds the control plane into {})",
                p.display(),
                self.bin.display()
            );
        }
        Ok(p)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Starts `program args` through the death-signal shim, output in logs/NAME.log.
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> anyhow::Result<u32> {
        std::fs::create_dir_all(self.dir.join("logs"))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let me = std::env::current_exe()?;
        let child = Command::new(me)
            .arg(crate::SHIM)
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id();
        self.children.push((name.to_string(), child));
        self.commands.retain(|(n, _, _)| n != name);
        self.commands
            .push((name.to_string(), program.to_path_buf(), args.to_vec()));
        Ok(pid)
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn alive(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }

    /// Polls `ready` until true; fails when `name` exits or after [`READY_WITHIN`].
    fn wait_ready(&mut self, name: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if ready() {
                return Ok(());
            }
            if !self.alive(name) {
                bail!(
                    "{name} exited; last lines of its log:\n{}",
                    self.log_tail(name)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready within {READY_WITHIN:?}; last lines of its log:\n{}",
                    self.log_tail(name)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kubectl(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut cmd = Command::new(self.tool("kubectl")?);
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot run kubectl")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn start(&mut self, opts: &Options) -> anyhow::Result<Info> {
        let certs = certs::generate(&self.dir)?;
        let token = random_hex(24)?;
        let tokens = self.dir.join("tokens.csv");
        std::fs::write(&tokens, format!("{token},admin,admin,system:masters\n"))?;

        // etcd
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = self.tool("etcd")?;
        self.spawn(
            "etcd",
            &etcd,
            &[
                "--name=default".into(),
                format!("--data-dir={}", self.dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        self.wait_ready("etcd", || http_ok(etcd_port, "/health"))?;

        // kube-apiserver
        let apiserver = self.tool("kube-apiserver")?;
        let d = |p: &Path| p.display().to_string();
        let audit_policy = self.dir.join("audit-policy.yaml");
        std::fs::write(
            &audit_policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Metadata\n",
        )?;
        let audit = self.dir.join("audit.log");
        let mut args = vec![
            format!("--audit-policy-file={}", d(&audit_policy)),
            format!("--audit-log-path={}", d(&audit)),
            "--audit-log-format=json".into(),
            "--audit-log-maxsize=0".into(),
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d(&self.dir.join("apiserver-certs"))),
            format!("--tls-cert-file={}", d(&certs.server_crt)),
            format!("--tls-private-key-file={}", d(&certs.server_key)),
            format!("--client-ca-file={}", d(&certs.ca_crt)),
            format!("--token-auth-file={}", d(&tokens)),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", d(&certs.sa_pub)),
            format!("--service-account-signing-key-file={}", d(&certs.sa_key)),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            "--etcd-compaction-interval=0".into(),
            "--v=1".into(),
        ];
        args.extend(opts.apiserver_args.iter().cloned());
        self.spawn("kube-apiserver", &apiserver, &args)?;
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = self.dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: admin\n    namespace: default\ncurrent-context: testenv\n",
                d(&certs.ca_crt)
            ),
        )?;
        self.kubeconfig = Some(kubeconfig.clone());
        self.wait_apiserver()?;

        let mut nodes = Vec::new();
        if opts.workloads {
            self.start_workloads(&kubeconfig, &certs, opts.nodes, &mut nodes)?;
        }
        Ok(Info {
            kubeconfig,
            server,
            etcd: etcd_url,
            ca: certs.ca_crt.clone(),
            token,
            nodes,
            dir: self.dir.clone(),
            audit,
            pids: self
                .children
                .iter()
                .map(|(n, c)| (n.clone(), c.id()))
                .collect(),
        })
    }

    fn wait_apiserver(&mut self) -> anyhow::Result<()> {
        let kc = self.kubeconfig.clone().context("no kubeconfig yet")?;
        let kubectl = self.tool("kubectl")?;
        self.wait_ready("kube-apiserver", || {
            kubectl_succeeds(&kubectl, &kc, &["get", "--raw", "/readyz"])
        })
    }

    /// Stops component `name` (SIGTERM, then SIGKILL after 10 s) and starts it again with the
    /// same flags; for the API server, waits until it is ready again.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let (program, args) = self
            .commands
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, p, a)| (p.clone(), a.clone()))
            .with_context(|| format!("no component named {name}"))?;
        if let Some(pos) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(pos);
            terminate(&child);
            wait_or_kill(&mut child, Instant::now() + Duration::from_secs(10));
        }
        self.spawn(name, &program, &args)?;
        if name == "kube-apiserver" {
            self.wait_apiserver()?;
        }
        Ok(())
    }

    fn start_workloads(
        &mut self,
        kubeconfig: &Path,
        certs: &certs::Certs,
        count: u32,
        nodes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let kc = format!("--kubeconfig={}", kubeconfig.display());
        let kcm = self.tool("kube-controller-manager")?;
        self.spawn(
            "kube-controller-manager",
            &kcm,
            &[
                kc.clone(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                format!("--service-account-private-key-file={}", certs.sa_key.display()),
                format!("--root-ca-file={}", certs.ca_crt.display()),
                format!("--cluster-signing-cert-file={}", certs.ca_crt.display()),
                format!("--cluster-signing-key-file={}", certs.ca_key.display()),
                "--use-service-account-credentials=false".into(),
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller".into(),
                "--concurrent-deployment-syncs=10".into(),
                "--concurrent-replicaset-syncs=10".into(),
                "--concurrent-gc-syncs=20".into(),
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                "--v=1".into(),
            ],
        )?;
        let sched = self.tool("kube-scheduler")?;
        self.spawn(
            "kube-scheduler",
            &sched,
            &[
                kc.clone(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                "--v=1".into(),
            ],
        )?;
        let kwok = self.tool("kwok")?;
        self.spawn(
            "kwok",
            &kwok,
            &[
                kc.clone(),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                "--manage-nodes-with-label-selector=".into(),
                "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom".into(),
                "--disregard-status-with-label-selector=".into(),
                "--cidr=10.244.0.1/16".into(),
                "--node-ip=10.0.0.1".into(),
                "--node-lease-duration-seconds=40".into(),
            ],
        )?;
        let mut yaml = String::new();
        for i in 0..count {
            let name = format!("kwok-node-{i}");
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  annotations:\n    node.alpha.kubernetes.io/ttl: \"0\"\n    kwok.x-k8s.io/node: fake\n  labels:\n    kubernetes.io/hostname: {name}\n    kubernetes.io/os: linux\n    kubernetes.io/arch: amd64\n    type: kwok\nstatus:\n  allocatable: {{cpu: \"64\", memory: 512Gi, pods: \"1100\"}}\n  capacity: {{cpu: \"64\", memory: 512Gi, pods: \"1100\"}}\n"
            ));
            nodes.push(name);
        }
        if count > 0 {
            self.kubectl(kubeconfig, &["apply", "-f", "-"], Some(&yaml))?;
            let kubectl = self.tool("kubectl")?;
            let kc2 = kubeconfig.to_path_buf();
            self.wait_ready("kwok", || {
                kubectl_succeeds(
                    &kubectl,
                    &kc2,
                    &[
                        "wait",
                        "--for=condition=Ready",
                        "node",
                        "--all",
                        "--timeout=2s",
                    ],
                )
            })?;
        }
        // The service-account controller is up once `default` has its ServiceAccount.
        let kubectl = self.tool("kubectl")?;
        let kc3 = kubeconfig.to_path_buf();
        self.wait_ready("kube-controller-manager", || {
            kubectl_succeeds(
                &kubectl,
                &kc3,
                &["get", "serviceaccount", "default", "-n", "default"],
            )
        })?;
        Ok(())
    }

    /// SIGTERM to every process, newest first; SIGKILL to what is left after 10 s.
    pub fn stop(&mut self) {
        for (_, child) in self.children.iter().rev() {
            terminate(child);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child) in self.children.iter_mut().rev() {
            wait_or_kill(child, deadline);
        }
        self.children.clear();
    }
}
