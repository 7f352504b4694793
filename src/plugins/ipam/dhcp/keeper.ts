/**
 * One attachment's lease, kept alive by the daemon until DEL (RFC 2131 §4.4.5): BOUND until T1,
 * RENEWING (unicast REQUEST) until T2, REBINDING (broadcast REQUEST) until expiry, then INIT again
 * (DISCOVER asking for the same address). Every new ACK is written to the store before it counts,
 * so a restarted daemon resumes from the last one. A vanished netns or interface ends the upkeep
 * (like upstream) but keeps the record, so DEL and GC still find it.
 */
import {
  type Attachment,
  acquire,
  type Bound,
  type ClientTiming,
  DhcpError,
  extend,
  NakError,
  release,
  retransmitDelays,
} from "./client.ts";
import type { LeaseRecord, LeaseStore } from "./store.ts";
import { LinkGoneError } from "./transport.ts";

export type KeeperState = "bound" | "renewing" | "rebinding" | "rebooting" | "gone" | "stopped";

export interface KeeperContext {
  store: LeaseStore;
  timing: ClientTiming;
  /** How long an acquisition keeps trying (upstream's -resendtimeout). */
  resendTimeoutMs: number;
  arpCheckMs: number;
  log(msg: string): void;
}

export class LeaseKeeper {
  state: KeeperState = "bound";
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  /** Consecutive failed restarts after expiry (their retry delay grows). */
  private failures = 0;

  constructor(
    public record: LeaseRecord,
    private readonly ctx: KeeperContext,
  ) {}

  get attachment(): Attachment {
    return { ...attachmentOf(this.record), arpCheckMs: this.ctx.arpCheckMs };
  }

  get lease(): Bound {
    return this.record.lease;
  }

  /** Whether the lease is valid now (the address may be used). */
  get held(): boolean {
    return this.state !== "stopped" && Date.now() < this.lease.expireAt;
  }

  /** Starts the upkeep: sleeps until T1, or works at once when the times already passed. */
  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.state === "stopped" || this.state === "gone") return;
    clearTimeout(this.timer);
    const wait = this.lease.renewAt - Date.now();
    if (wait > 0) {
      this.state = "bound";
      // setTimeout takes at most 2^31-1 ms; a longer wait just wakes up and sleeps again.
      this.timer = setTimeout(() => this.schedule(), Math.min(wait, 0x7fffffff));
      return;
    }
    this.running ??= this.work()
      .catch((err) => this.ctx.log(`${this.record.clientID}: lease upkeep failed: ${(err as Error).message}`))
      .finally(() => {
        this.running = undefined;
      });
  }

  /** One pass of RENEWING / REBINDING / restart, until a new lease is bound or the keeper stops. */
  private async work(): Promise<void> {
    const id = this.record.clientID;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const now = Date.now();
      const l = this.lease;
      if (now < l.renewAt) break;
      let next: Bound;
      try {
        if (now < l.rebindAt) {
          this.state = "renewing";
          this.ctx.log(`${id}: renewing lease ${l.ip}`);
          next = await extend(this.attachment, l, false, this.ctx.timing, l.rebindAt, signal);
        } else if (now < l.expireAt) {
          this.state = "rebinding";
          this.ctx.log(`${id}: renewal time expired, rebinding ${l.ip}`);
          next = await extend(this.attachment, l, true, this.ctx.timing, l.expireAt, signal);
        } else {
          this.state = "rebooting";
          this.ctx.log(`${id}: lease ${l.ip} expired, acquiring a new one`);
          next = await acquire(
            this.attachment,
            this.ctx.timing,
            now + this.ctx.resendTimeoutMs,
            signal,
            l.ip,
          );
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof LinkGoneError) {
          this.state = "gone";
          this.ctx.log(`${id}: ${err.message}; no longer maintaining the lease`);
          return;
        }
        this.ctx.log(`${id}: ${err instanceof Error ? err.message : String(err)}`);
        if (err instanceof NakError) {
          // The server took the lease back: start over at once.
          this.record.lease = { ...l, renewAt: now, rebindAt: now, expireAt: now };
          continue;
        }
        if (this.state === "rebooting") {
          const delays = retransmitDelays(this.ctx.timing.resendMaxMs);
          let d = 0;
          for (let i = 0; i <= Math.min(this.failures, 8); i++) d = delays.next().value as number;
          this.failures++;
          await sleep(d, signal);
        } else if (!(err instanceof DhcpError)) {
          await sleep(1000, signal); // a socket error: do not spin
        }
        continue;
      }
      if (signal.aborted) return;
      this.failures = 0;
      this.record.lease = next;
      try {
        this.ctx.store.save(this.record);
      } catch (err) {
        // The lease is bound all the same; the next daemon would resume from the older ACK.
        this.ctx.log(`${id}: saving the lease in ${this.ctx.store.dir}: ${(err as Error).message}`);
      }
      this.ctx.log(`${id}: lease ${next.ip} bound, expiration is ${new Date(next.expireAt).toISOString()}`);
    }
    this.schedule();
  }

  /**
   * Ends the upkeep. `releaseLease`: send DHCPRELEASE and forget the lease (DEL, GC); otherwise it
   * stays on disk for the next daemon (shutdown).
   */
  async stop(releaseLease: boolean): Promise<void> {
    const wasHeld = this.held;
    this.state = "stopped";
    clearTimeout(this.timer);
    this.abort.abort();
    await this.running;
    if (!releaseLease) return;
    if (wasHeld) {
      try {
        await release(this.attachment, this.lease);
        this.ctx.log(`${this.record.clientID}: released ${this.lease.ip}`);
      } catch (err) {
        // The netns or interface is gone: nothing can be sent; the server lets the lease expire.
        this.ctx.log(`${this.record.clientID}: failed to release DHCP lease: ${(err as Error).message}`);
      }
    }
    try {
      this.ctx.store.remove(this.record.clientID);
    } catch (err) {
      this.ctx.log(
        `${this.record.clientID}: removing the lease from ${this.ctx.store.dir}: ${(err as Error).message}`,
      );
    }
  }
}

export function attachmentOf(r: LeaseRecord): Attachment {
  return {
    clientID: r.clientID,
    netns: r.netns,
    ifName: r.ifName,
    options: r.options,
    broadcast: r.broadcast,
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
