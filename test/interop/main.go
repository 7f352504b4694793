// Command interop drives a CNI network list with upstream's Go libcni (containernetworking/cni 1.1.x),
// so the tests can check that our plugins work under the reference runtime library.
//
// Usage: interop '<json Options>' — runs ADD, CHECK and DEL of the list in Options.ConfList and prints
// one JSON line: {"add": Outcome, "check": Outcome, "del": Outcome}, an Outcome being
// {"ok": true, "result": <the ADD result as the plugin's version prints it>} or {"ok": false, "code", "msg"}.
// It must run in the netns that plays the host (ip netns exec), like a runtime.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

type options struct {
	ConfList       string                 `json:"conflist"`
	CNIPath        []string               `json:"cniPath"`
	CacheDir       string                 `json:"cacheDir"`
	NetNS          string                 `json:"netns"`
	ContainerID    string                 `json:"containerID"`
	IfName         string                 `json:"ifName"`
	Args           [][2]string            `json:"cniArgs"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
}

type outcome struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Code   uint            `json:"code"`
	Msg    string          `json:"msg,omitempty"`
}

func fail(err error) outcome {
	var e *types.Error
	if errors.As(err, &e) {
		return outcome{Code: e.Code, Msg: err.Error()}
	}
	// An error of libcni itself (not a plugin's CNI error) has no code on the wire: 0.
	return outcome{Code: 0, Msg: err.Error()}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: interop '<json options>'")
		os.Exit(2)
	}
	var o options
	if err := json.Unmarshal([]byte(os.Args[1]), &o); err != nil {
		fmt.Fprintln(os.Stderr, "interop: bad options:", err)
		os.Exit(2)
	}
	list, err := libcni.ConfListFromBytes([]byte(o.ConfList))
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop: bad conflist:", err)
		os.Exit(2)
	}
	cni := libcni.NewCNIConfigWithCacheDir(o.CNIPath, o.CacheDir, nil)
	rt := &libcni.RuntimeConf{
		ContainerID:    o.ContainerID,
		NetNS:          o.NetNS,
		IfName:         o.IfName,
		Args:           o.Args,
		CapabilityArgs: o.CapabilityArgs,
	}
	ctx := context.Background()
	out := map[string]outcome{}

	if res, err := cni.AddNetworkList(ctx, list, rt); err != nil {
		out["add"] = fail(err)
	} else if b, err := json.Marshal(res); err != nil {
		out["add"] = fail(err)
	} else {
		out["add"] = outcome{OK: true, Result: b}
	}
	if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
		out["check"] = fail(err)
	} else {
		out["check"] = outcome{OK: true}
	}
	if err := cni.DelNetworkList(ctx, list, rt); err != nil {
		out["del"] = fail(err)
	} else {
		out["del"] = outcome{OK: true}
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
