// The VM lane's runner (scripts/vm run): the guest command's status comes back, upstream's Go plugins run
// inside, a guest that dies without a result and a guest that overruns its time fail loudly, and neither
// leaves a qemu process or a host mount behind. Each test boots the VM once (TCG: seconds, not ms).
import { afterEach, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupAll, tempDir } from "../helpers/netns.ts";

const vm = join(import.meta.dir, "../../scripts/vm");
const BOOT_BOUND = 300_000;

afterEach(() => cleanupAll());

/** qemu processes serving the results share `out` (the runner names it on qemu's command line). */
function qemuFor(out: string): number[] {
  const r = spawnSync("pgrep", ["-f", `qemu-system-x86_64 .*path=${out},`], { encoding: "utf8" });
  // `timeout`'s command line names qemu's too: keep qemu itself
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("qemu-system");
      } catch {
        return false; // gone meanwhile
      }
    });
}

/** Host mounts the lane could have left: 9p, overlays and anything under a results share (other tests'
 * netns mounts come and go meanwhile, so they are left out). */
function mounts(): string[] {
  return readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter((l) => / (9p|overlay) /.test(l) || l.includes("tscni-vm"));
}

function runVm(out: string, secs: number, ...cmd: string[]) {
  return spawnSync(vm, ["run", "-t", String(secs), "--", ...cmd], {
    encoding: "utf8",
    env: { ...process.env, TSCNI_VM_OUT: out },
    timeout: BOOT_BOUND,
  });
}

describe("scripts/vm run", () => {
  test(
    "the guest command's status comes back; upstream's Go plugins and our netlink kinds work inside",
    () => {
      const out = tempDir("tscni-vmt-").path;
      const before = mounts();
      const cmd = [
        "set -e",
        // the guest's own kernel, not the host's
        `[ "$(uname -r)" != "${spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim()}" ]`,
        "CNI_COMMAND=VERSION /usr/lib/cni/bridge </dev/null >/run/vm-out/version.json",
        "/sbin/ip link add d0 type dummy && /sbin/ip -j -d link show d0 >/run/vm-out/dummy.json",
        "exit 7",
      ].join("\n");
      const r = runVm(out, 240, "bash", "-c", cmd);
      expect(r.stdout).toContain("TSCNI_VM_EXIT=7");
      expect(r.status).toBe(7);
      expect(JSON.parse(readFileSync(join(out, "version.json"), "utf8")).supportedVersions).toContain(
        "1.0.0",
      );
      expect(JSON.parse(readFileSync(join(out, "dummy.json"), "utf8"))[0].linkinfo.info_kind).toBe("dummy");
      expect(qemuFor(out)).toEqual([]);
      expect(mounts()).toEqual(before);
    },
    BOOT_BOUND,
  );

  test(
    "a guest that powers off without a result fails the run with a clear message",
    () => {
      const out = tempDir("tscni-vmt-").path;
      const r = runVm(out, 240, "bash", "-c", "echo o >/proc/sysrq-trigger; sleep 60");
      expect(r.status).toBe(125);
      expect(r.stderr).toContain("the guest ended without a result");
      expect(qemuFor(out)).toEqual([]);
    },
    BOOT_BOUND,
  );

  test(
    "a guest past its time is killed: status 125, no qemu and no mount left",
    () => {
      const out = tempDir("tscni-vmt-").path;
      const before = mounts();
      const r = runVm(out, 3, "sleep", "600");
      expect(r.status).toBe(125);
      expect(r.stderr).toContain("did not finish within 3s");
      expect(qemuFor(out)).toEqual([]);
      expect(mounts()).toEqual(before);
    },
    BOOT_BOUND,
  );

  test(
    "kill -9 of the runner takes timeout and qemu with it (parent-death signals)",
    async () => {
      const out = tempDir("tscni-vmt-").path;
      const child = spawn(vm, ["run", "-t", "600", "--", "sleep", "600"], {
        env: { ...process.env, TSCNI_VM_OUT: out },
        stdio: "ignore",
      });
      try {
        let pids: number[] = [];
        for (let i = 0; i < 600 && !pids.length; i++) {
          await Bun.sleep(100);
          pids = qemuFor(out);
        }
        expect(pids).toHaveLength(1);
        // qemu's parent is `timeout`, whose parent is the runner
        const ppid = Number(readFileSync(`/proc/${pids[0]}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
        expect(readFileSync(`/proc/${ppid}/comm`, "utf8").trim()).toBe("timeout");
        process.kill(child.pid ?? 0, "SIGKILL"); // as a kubelet timeout or an OOM kill would
        for (let i = 0; i < 100 && (qemuFor(out).length || existsSync(`/proc/${ppid}`)); i++)
          await Bun.sleep(100);
        expect(qemuFor(out)).toEqual([]);
        expect(existsSync(`/proc/${ppid}`)).toBe(false);
      } finally {
        child.kill("SIGKILL");
        spawnSync("pkill", ["-KILL", "-f", `path=${out},`]);
      }
    },
    BOOT_BOUND,
  );
});
