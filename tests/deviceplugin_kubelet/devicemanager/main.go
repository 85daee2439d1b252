// hal0-devicemanager: the kubelet's own device manager
// (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager), wired the way the kubelet
// wires it (a topology manager with the device manager as its hint provider),
// serving kubelet.sock in a directory of our choosing, and driven over
// stdin/stdout by hal0's tests (tests/deviceplugin_devicemanager.rs).
//
// Usage: hal0-devicemanager --plugin-dir DIR [-v N]
//
// Once kubelet.sock accepts registrations it prints {"event":"ready",...}.
// Then it reads one JSON request per line on stdin and answers each with one
// JSON line on stdout (klog writes to stderr):
//
//	{"op":"wait","resource":R,"capacity":N,"allocatable":M,"timeout_ms":T}
//	    polls GetCapacity (as the kubelet's node status loop does) until R has
//	    that capacity and allocatable; answers with capacity, allocatable and
//	    the healthy device IDs (GetAllocatableDevices), ok=false on timeout.
//	{"op":"admit","pod":P,"containers":[{"name":C,"limits":{R:N}}]}
//	    pod admission through the topology manager (which calls the device
//	    manager's Allocate per container, and that calls the plugin's
//	    GetPreferredAllocation and Allocate), then, per container, what the
//	    kubelet hands the runtime: GetDeviceRunContainerOptions (devices,
//	    mounts, envs, annotations, CDI devices) and GetDevices (the IDs).
//	{"op":"status","pod":P}
//	    the pod's allocatedResourcesStatus (UpdateAllocatedResourcesStatus):
//	    the health of each allocated device as the kubelet reports it.
//	{"op":"wait_update","pod":P,"timeout_ms":T}
//	    waits for the device manager to announce a health change of a device
//	    allocated to P on its Updates() channel (ResourceHealthStatus).
//	{"op":"delete","pod":P}
//	    the pod is gone (no longer active): its devices are freed at the next
//	    allocation, as in the kubelet.
//	{"op":"restart"}
//	    a kubelet restart: the manager stops, a new one starts on the same
//	    directory (it removes every socket there and reads its checkpoint).
//	{"op":"stop"}
//	    stops the manager and exits.
//
// Why not devicemanager.NewManagerImpl: it hard-codes the socket path
// (pluginapi.KubeletSocket, /var/lib/kubelet/device-plugins/kubelet.sock) and
// hands it to the unexported newManagerImpl(logger, socketPath, topology,
// store), which the kubelet's own tests call. This harness calls that same
// function through a //go:linkname, so only the directory differs from a
// kubelet; every line that runs is the kubelet's.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
	_ "unsafe" // for go:linkname

	cadvisorapi "github.com/google/cadvisor/info/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
)

// newManagerImpl is devicemanager.newManagerImpl: NewManagerImpl without the
// fixed socket path.
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node, topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

type request struct {
	Op          string      `json:"op"`
	Resource    string      `json:"resource"`
	Capacity    int64       `json:"capacity"`
	Allocatable int64       `json:"allocatable"`
	TimeoutMs   int64       `json:"timeout_ms"`
	Pod         string      `json:"pod"`
	Containers  []container `json:"containers"`
}

type container struct {
	Name   string           `json:"name"`
	Limits map[string]int64 `json:"limits"`
}

// node is one running kubelet's device manager and topology manager.
type node struct {
	logger   klog.Logger
	socket   string
	manager  *devicemanager.ManagerImpl
	topology topologymanager.Manager

	mu      sync.Mutex
	pods    map[string]*v1.Pod // active pods by name
	updates []string           // pod UIDs announced on Updates(), in order
	changed chan struct{}      // closed and replaced on every update
}

func startNode(logger klog.Logger, socket string, pods map[string]*v1.Pod) (*node, error) {
	// The kubelet's defaults: topology-manager-policy none, scope container.
	tm, err := topologymanager.NewManager(nil, topologymanager.PolicyNone, topologymanager.ContainerTopologyScope, nil)
	if err != nil {
		return nil, fmt.Errorf("topology manager: %w", err)
	}
	dm, err := newManagerImpl(logger, socket, nil, tm)
	if err != nil {
		return nil, fmt.Errorf("device manager: %w", err)
	}
	tm.AddHintProvider(logger, dm)
	n := &node{
		logger:   logger,
		socket:   socket,
		manager:  dm,
		topology: tm,
		pods:     pods,
		changed:  make(chan struct{}),
	}
	sourcesReady := config.NewSourcesReady(func(sets.Set[string]) bool { return true })
	if err := dm.Start(logger, n.activePods, sourcesReady, containermap.NewContainerMap(), sets.New[string]()); err != nil {
		return nil, fmt.Errorf("device manager start: %w", err)
	}
	go n.drainUpdates(dm)
	return n, nil
}

func (n *node) activePods() []*v1.Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*v1.Pod, 0, len(n.pods))
	for _, p := range n.pods {
		out = append(out, p)
	}
	return out
}

// drainUpdates records what the device manager announces on Updates(), as the
// kubelet's sync loop consumes it.
func (n *node) drainUpdates(dm *devicemanager.ManagerImpl) {
	for u := range dm.Updates() {
		n.mu.Lock()
		n.updates = append(n.updates, u.PodUIDs...)
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

func quantities(list v1.ResourceList) map[string]int64 {
	out := map[string]int64{}
	for name, q := range list {
		out[string(name)] = q.Value()
	}
	return out
}

func (n *node) capacity() map[string]any {
	capacity, allocatable, inactive := n.manager.GetCapacity()
	healthy := map[string][]string{}
	for res, devs := range n.manager.GetAllocatableDevices() {
		ids := make([]string, 0, len(devs))
		for id := range devs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		healthy[res] = ids
	}
	if inactive == nil {
		inactive = []string{}
	}
	sort.Strings(inactive)
	return map[string]any{
		"capacity":    quantities(capacity),
		"allocatable": quantities(allocatable),
		"healthy_ids": healthy,
		"inactive":    inactive,
	}
}

func timeout(r request) time.Duration {
	if r.TimeoutMs <= 0 {
		return 10 * time.Second
	}
	return time.Duration(r.TimeoutMs) * time.Millisecond
}

func (n *node) wait(r request) map[string]any {
	deadline := time.Now().Add(timeout(r))
	for {
		state := n.capacity()
		c := state["capacity"].(map[string]int64)
		a := state["allocatable"].(map[string]int64)
		if c[r.Resource] == r.Capacity && a[r.Resource] == r.Allocatable {
			state["ok"] = true
			return state
		}
		if time.Now().After(deadline) {
			state["ok"] = false
			state["error"] = fmt.Sprintf("%s did not reach capacity %d, allocatable %d within %v",
				r.Resource, r.Capacity, r.Allocatable, timeout(r))
			return state
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func podUID(name string) types.UID { return types.UID("uid-" + name) }

func (n *node) admit(r request) map[string]any {
	pod := &v1.Pod{}
	pod.Name = r.Pod
	pod.Namespace = "default"
	pod.UID = podUID(r.Pod)
	for _, c := range r.Containers {
		limits := v1.ResourceList{}
		for name, count := range c.Limits {
			limits[v1.ResourceName(name)] = *resource.NewQuantity(count, resource.DecimalSI)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{
			Name:      c.Name,
			Resources: v1.ResourceRequirements{Limits: limits, Requests: limits},
		})
	}
	n.mu.Lock()
	others := make([]*v1.Pod, 0, len(n.pods))
	for _, p := range n.pods {
		others = append(others, p)
	}
	// Active from here: the kubelet admits pods it is about to run.
	n.pods[r.Pod] = pod
	n.mu.Unlock()

	result := n.topology.Admit(&lifecycle.PodAdmitAttributes{Pod: pod, OtherPods: others, Operation: lifecycle.AddOperation})
	if !result.Admit {
		n.mu.Lock()
		delete(n.pods, r.Pod)
		n.mu.Unlock()
		return map[string]any{"ok": true, "admitted": false, "reason": result.Reason, "message": result.Message}
	}
	var containers []map[string]any
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		opts, err := n.manager.GetDeviceRunContainerOptions(context.Background(), pod, c)
		if err != nil {
			return map[string]any{"ok": false, "admitted": true, "error": fmt.Sprintf("GetDeviceRunContainerOptions(%s): %v", c.Name, err)}
		}
		ids := map[string][]string{}
		for res, devs := range n.manager.GetDevices(string(pod.UID), c.Name) {
			list := make([]string, 0, len(devs))
			for id := range devs {
				list = append(list, id)
			}
			sort.Strings(list)
			ids[res] = list
		}
		devices := []map[string]string{}
		envs := []map[string]string{}
		mounts := []map[string]any{}
		annotations := []map[string]string{}
		cdi := []string{}
		if opts != nil {
			for _, d := range opts.Devices {
				devices = append(devices, map[string]string{"host_path": d.PathOnHost, "container_path": d.PathInContainer, "permissions": d.Permissions})
			}
			for _, e := range opts.Envs {
				envs = append(envs, map[string]string{"name": e.Name, "value": e.Value})
			}
			for _, m := range opts.Mounts {
				mounts = append(mounts, map[string]any{"container_path": m.ContainerPath, "host_path": m.HostPath, "read_only": m.ReadOnly})
			}
			for _, a := range opts.Annotations {
				annotations = append(annotations, map[string]string{"name": a.Name, "value": a.Value})
			}
			for _, d := range opts.CDIDevices {
				cdi = append(cdi, d.Name)
			}
		}
		containers = append(containers, map[string]any{
			"name": c.Name, "device_ids": ids, "devices": devices, "envs": envs,
			"mounts": mounts, "annotations": annotations, "cdi_devices": cdi,
		})
	}
	return map[string]any{"ok": true, "admitted": true, "containers": containers}
}

func (n *node) pod(name string) (*v1.Pod, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pods[name]
	if !ok {
		return nil, fmt.Errorf("no active pod %q", name)
	}
	return p, nil
}

func (n *node) status(r request) map[string]any {
	pod, err := n.pod(r.Pod)
	if err != nil {
		return map[string]any{"ok": false, "error": err.Error()}
	}
	status := &v1.PodStatus{}
	for _, c := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, v1.ContainerStatus{Name: c.Name})
	}
	n.manager.UpdateAllocatedResourcesStatus(pod, status)
	out := []map[string]any{}
	for _, cs := range status.ContainerStatuses {
		resources := []map[string]any{}
		for _, rs := range cs.AllocatedResourcesStatus {
			health := map[string]string{}
			for _, h := range rs.Resources {
				health[string(h.ResourceID)] = string(h.Health)
			}
			resources = append(resources, map[string]any{"name": string(rs.Name), "health": health})
		}
		out = append(out, map[string]any{"name": cs.Name, "resources": resources})
	}
	return map[string]any{"ok": true, "containers": out}
}

func (n *node) waitUpdate(r request) map[string]any {
	uid := string(podUID(r.Pod))
	timer := time.NewTimer(timeout(r))
	defer timer.Stop()
	for {
		n.mu.Lock()
		for i, u := range n.updates {
			if u == uid {
				// Consumed: a later wait_update waits for a later announcement.
				n.updates = append(n.updates[:i], n.updates[i+1:]...)
				n.mu.Unlock()
				return map[string]any{"ok": true}
			}
		}
		changed := n.changed
		n.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return map[string]any{"ok": false, "error": fmt.Sprintf("no device health update for pod %s within %v", r.Pod, timeout(r))}
		}
	}
}

func (n *node) delete(r request) map[string]any {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.pods[r.Pod]; !ok {
		return map[string]any{"ok": false, "error": fmt.Sprintf("no active pod %q", r.Pod)}
	}
	delete(n.pods, r.Pod)
	return map[string]any{"ok": true}
}

func main() {
	klog.InitFlags(nil)
	pluginDir := flag.String("plugin-dir", "", "directory for kubelet.sock, the plugins' sockets and the checkpoint")
	flag.Parse()
	if *pluginDir == "" {
		fmt.Fprintln(os.Stderr, "hal0-devicemanager: --plugin-dir is required")
		os.Exit(2)
	}
	dir, err := filepath.Abs(*pluginDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hal0-devicemanager: --plugin-dir %q: %v\n", *pluginDir, err)
		os.Exit(2)
	}
	logger := klog.Background()
	socket := filepath.Join(dir, "kubelet.sock")
	pods := map[string]*v1.Pod{}
	n, err := startNode(logger, socket, pods)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hal0-devicemanager: %v\n", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	emit := func(v map[string]any) {
		if err := out.Encode(v); err != nil {
			fmt.Fprintf(os.Stderr, "hal0-devicemanager: stdout: %v\n", err)
			os.Exit(1)
		}
	}
	emit(map[string]any{"event": "ready", "socket": socket})

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			emit(map[string]any{"ok": false, "error": fmt.Sprintf("bad request %q: %v", in.Text(), err)})
			continue
		}
		switch r.Op {
		case "wait":
			emit(n.wait(r))
		case "admit":
			emit(n.admit(r))
		case "status":
			emit(n.status(r))
		case "wait_update":
			emit(n.waitUpdate(r))
		case "delete":
			emit(n.delete(r))
		case "restart":
			if err := n.manager.Stop(logger); err != nil {
				emit(map[string]any{"ok": false, "error": fmt.Sprintf("stop: %v", err)})
				continue
			}
			next, err := startNode(logger, socket, pods)
			if err != nil {
				emit(map[string]any{"ok": false, "error": err.Error()})
				os.Exit(1)
			}
			n = next
			emit(map[string]any{"ok": true})
		case "stop":
			err := n.manager.Stop(logger)
			emit(map[string]any{"ok": err == nil, "error": errString(err)})
			return
		default:
			emit(map[string]any{"ok": false, "error": fmt.Sprintf("unknown op %q", r.Op)})
		}
	}
	if err := in.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		fmt.Fprintf(os.Stderr, "hal0-devicemanager: stdin: %v\n", err)
	}
	// stdin closed: the test is gone; stop like a kubelet shutting down.
	_ = n.manager.Stop(logger)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
