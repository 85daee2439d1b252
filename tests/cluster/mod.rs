//! A real Kubernetes control plane for the Kubernetes tests: `hal0-testenv` (etcd,
//! kube-apiserver with RBAC, kube-controller-manager, kube-scheduler, kwok nodes), started once
//! per test binary, with hal0 installed as a user installs it (`kubectl apply -k deploy/`).
//! Every test works in a namespace of its own. hal0's processes run as the ServiceAccounts
//! deploy/ creates, with tokens from the TokenRequest API, so RBAC is enforced for real.
//! `cluster_bare()` is the same control plane with nothing installed, for a test binary that
//! installs hal0 its own way (tests/helm_chart.rs: `helm install`).
//!
//! Needs HAL0_KUBE_BIN_DIR (scripts/test.sh sets it from scripts/setup-kube.sh); without it
//! every test here fails and says how to get it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin_dir() -> PathBuf {
    match std::env::var_os("HAL0_KUBE_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => panic!(
            "HAL0_KUBE_BIN_DIR is not set: these tests need the real control plane. Run \
             scripts/test.sh, or `eval \"$(scripts/setup-kube.sh)\"; export \
             HAL0_KUBE_BIN_DIR=$KUBE_BIN_DIR` first"
        ),
    }
}

/// The control plane of this test binary.
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub etcd: String,
    pub dir: PathBuf,
    pub ca: PathBuf,
    /// The API server's audit log (JSON lines).
    pub audit: PathBuf,
    /// hal0-testenv's stdin (it stops the control plane when this closes) and stdout, for
    /// commands such as `restart kube-apiserver`.
    control: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Starts (once) and returns the control plane, with hal0 installed by `kubectl apply -k deploy/`.
pub fn cluster() -> &'static Cluster {
    let c = cluster_bare();
    INSTALLED.get_or_init(|| install_deploy(c));
    c
}

/// Starts (once) and returns the control plane without installing anything: for a test binary
/// that installs hal0 its own way (tests/helm_chart.rs). Do not mix with [`cluster`] in one
/// binary.
pub fn cluster_bare() -> &'static Cluster {
    CLUSTER.get_or_init(start)
}

fn start() -> Cluster {
    let bin = bin_dir();
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    // The child is owned by a thread that lives as long as the test binary: when the binary
    // exits (or panics, or is killed) its stdin pipe closes and hal0-testenv stops everything.
    std::thread::spawn(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hal0-testenv"))
            .arg("--bin-dir")
            .arg(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hal0-testenv");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = None;
        let mut line = String::new();
        while stdout.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(json) = line.trim().strip_prefix("READY ") {
                ready = Some(json.to_string());
                break;
            }
            line.clear();
        }
        let _ = tx.send(ready.map(|r| (r, stdin, stdout)));
        let _ = child.wait();
    });
    let (json, stdin, stdout) = rx
        .recv()
        .ok()
        .flatten()
        .expect("hal0-testenv did not become ready (see its errors above)");
    let info: Value = serde_json::from_str(&json).expect("READY json");
    let path = |k: &str| PathBuf::from(info[k].as_str().expect(k));
    let c = Cluster {
        kubeconfig: path("kubeconfig"),
        server: info["server"].as_str().unwrap_or_default().to_string(),
        etcd: info["etcd"].as_str().unwrap_or_default().to_string(),
        dir: path("dir"),
        ca: path("ca"),
        audit: path("audit"),
        control: Mutex::new((stdin, stdout)),
    };
    eprintln!("control plane ready in {:?} at {}", t0.elapsed(), c.server);
    c
}

fn install_deploy(c: &Cluster) {
    // As docs/kubernetes.md says: the CRD first (established before any Slot is sent), then
    // everything else.
    let out = c.kubectl(&["apply", "-k", &repo().join("crds").display().to_string()]);
    assert!(out.ok(), "kubectl apply -k crds/ failed: {}", out.stderr);
    let out = c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/slots.hal0.dev",
        "--timeout=60s",
    ]);
    assert!(out.ok(), "the Slot CRD is not established: {}", out.stderr);
    let out = c.kubectl(&["apply", "-k", &repo().join("deploy").display().to_string()]);
    assert!(out.ok(), "kubectl apply -k deploy/ failed: {}", out.stderr);
    assert!(
        !out.stderr.contains("Warning"),
        "kubectl apply -k deploy/ warned: {}",
        out.stderr
    );
}

/// What a kubectl run printed.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl Cluster {
    /// Restarts a control-plane component (e.g. `kube-apiserver`) with the same flags; returns
    /// once it is ready again.
    pub fn restart(&self, component: &str) {
        let mut guard = self.control.lock().expect("control lock");
        let (stdin, stdout) = &mut *guard;
        writeln!(stdin, "restart {component}").expect("send restart");
        stdin.flush().expect("flush");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("restart answer");
        assert_eq!(line.trim(), format!("RESTARTED {component}"), "{line}");
    }

    /// The audit log's requests so far (metadata level): verb, user.username, objectRef...
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Out {
        self.kubectl_in(args, None)
    }

    /// kubectl as the cluster admin, with `stdin`.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Out {
        kubectl_with(&self.kubeconfig, args, stdin)
    }

    /// `kubectl apply -f -` of `yaml` in `ns`.
    pub fn apply(&self, ns: &str, yaml: &str) -> Out {
        self.kubectl_in(&["apply", "-n", ns, "-f", "-"], Some(yaml))
    }

    /// A kube client as the admin.
    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }

    /// A new namespace for one test: `PREFIX-N`.
    pub fn namespace(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = format!("{prefix}-{}", N.fetch_add(1, Ordering::SeqCst));
        let out = self.kubectl(&["create", "namespace", &ns]);
        assert!(out.ok(), "create namespace {ns}: {}", out.stderr);
        ns
    }

    /// A kubeconfig that authenticates as ServiceAccount `sa` of namespace `hal0`, with a
    /// token from the TokenRequest API (`kubectl create token`).
    pub fn service_account_kubeconfig(&self, sa: &str, namespace: &str) -> PathBuf {
        self.service_account_kubeconfig_in(sa, "hal0", namespace)
    }

    /// A kubeconfig that authenticates as ServiceAccount `sa` of namespace `sa_namespace`
    /// (TokenRequest API), with `namespace` as its default namespace.
    pub fn service_account_kubeconfig_in(
        &self,
        sa: &str,
        sa_namespace: &str,
        namespace: &str,
    ) -> PathBuf {
        let out = self.kubectl(&["create", "token", sa, "-n", sa_namespace, "--duration=2h"]);
        assert!(out.ok(), "kubectl create token {sa}: {}", out.stderr);
        let token = out.stdout.trim();
        static N: AtomicU32 = AtomicU32::new(0);
        let path = self.dir.join(format!(
            "kubeconfig-{sa}-{}",
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {sa}\n  user:\n    token: {token}\ncontexts:\n- name: {sa}\n  context:\n    cluster: testenv\n    user: {sa}\n    namespace: {namespace}\ncurrent-context: {sa}\n",
                self.server,
                self.ca.display()
            ),
        )
        .expect("write kubeconfig");
        path
    }
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new(bin_dir().join("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("kubectl stdin");
    }
    let out = child.wait_with_output().expect("kubectl output");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(config).expect("client")
}

/// Polls `f` every 100 ms until it returns `Some`, at most `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the gateway's `/v1/models` lists `model`; the whole answer.
pub async fn until_listed(gw: &Proc, model: &str) -> Value {
    let http = reqwest::Client::new();
    let quoted = format!("\"{model}\"");
    until(&format!("the gateway lists {model}"), WAIT, || async {
        let body: Value = http
            .get(gw.url("/v1/models"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body.to_string().contains(&quoted).then_some(body)
    })
    .await
}

/// A Slot manifest as a user writes it (llama.cpp, a placeholder model); `extra` lines go
/// under `spec:` (indent 2).
pub fn slot_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: {name}\nspec:\n  provider: llama.cpp\n  model: hf:org/repo/Small.gguf\n{extra}"
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A hal0 process (controller or gateway) that is stopped (SIGTERM) when dropped; its log is
/// printed when the test fails.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to `within`; the exit status, or None if it did not exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.terminate(Duration::from_secs(15)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.log.display(), self.log_text());
        }
    }
}

/// `hal0 ARGS` with `kubeconfig`, its output in a log file; `port` is where it serves HTTP.
pub fn spawn_hal0(name: &str, kubeconfig: &Path, args: &[String], port: u16) -> Proc {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = cluster_bare().dir.join("procs");
    std::fs::create_dir_all(&dir).expect("procs dir");
    let log = dir.join(format!("{name}-{}.log", N.fetch_add(1, Ordering::SeqCst)));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_hal0"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "HAL0_LOG",
            std::env::var("HAL0_TEST_LOG").unwrap_or_else(|_| "info,hal0=debug".into()),
        )
        .env_remove("HAL0_CONFIG")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("start hal0");
    Proc { child, log, port }
}

/// `hal0 controller` as the hal0-controller ServiceAccount, watching `namespace` (every
/// namespace when None), with extra flags.
pub fn controller(namespace: Option<&str>, extra: &[&str]) -> Proc {
    let c = cluster();
    let kc = c.service_account_kubeconfig("hal0-controller", "hal0");
    let port = free_port();
    let mut args = vec![
        "controller".to_string(),
        format!("--health-listen=127.0.0.1:{port}"),
    ];
    if let Some(ns) = namespace {
        args.push(format!("--namespace={ns}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_hal0("controller", &kc, &args, port)
}

/// `hal0 serve --source kube` as the hal0-gateway ServiceAccount over namespace `hal0`,
/// sending slot traffic to `upstream` (a local provider) instead of the Services.
pub fn gateway(upstream: &str) -> Proc {
    let c = cluster();
    let kc = c.service_account_kubeconfig("hal0-gateway", "hal0");
    let port = free_port();
    let args = vec![
        "serve".to_string(),
        "--source=kube".to_string(),
        format!("--listen=127.0.0.1:{port}"),
        "--namespace=hal0".to_string(),
        "--load-timeout=60s".to_string(),
        format!("--endpoint-override={upstream}"),
    ];
    spawn_hal0("gateway", &kc, &args, port)
}

/// The JSON of `kind/name` in `ns` (kind: slot, deployment, service, lease), if it exists,
/// read as the admin.
pub async fn get(kind: &str, ns: &str, name: &str) -> Option<Value> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, ApiResource, DynamicObject};
    // A client per call: a client is bound to the runtime it was made on, and every test has
    // its own runtime.
    let client = cluster_bare().client().await;
    let ar = match kind {
        "slot" => ApiResource::erase::<hal0::kube::crd::Slot>(&()),
        "deployment" => ApiResource::erase::<Deployment>(&()),
        "service" => ApiResource::erase::<Service>(&()),
        "lease" => ApiResource::erase::<Lease>(&()),
        other => panic!("get: unknown kind {other}"),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &ar);
    let obj = api.get_opt(name).await.ok().flatten()?;
    serde_json::to_value(obj).ok()
}

/// The condition `type_` of a Slot's status: (status, reason, message).
pub fn condition(slot: &Value, type_: &str) -> Option<(String, String, String)> {
    slot["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
}
