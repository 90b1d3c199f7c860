// One stack of closers for start-up and shutdown: whatever a start function
// opened is pushed here as soon as it is open, so a start that fails halfway
// closes exactly what it opened (in reverse order), and a clean shutdown runs
// the same stack.

type Close = () => unknown;

export class Closers {
  private readonly stack: { name: string; close: Close }[] = [];
  private closing: Promise<void> | undefined;

  /** Registers a closer; returns the value so `const db = closers.add('db', open(), (d) => d.close())` reads in one line. */
  add<T>(name: string, value: T, close: (value: T) => unknown): T {
    this.stack.push({ name, close: () => close(value) });
    return value;
  }

  /** Registers a closer that needs no value. */
  defer(name: string, close: Close): void {
    this.stack.push({ name, close });
  }

  /**
   * Closes everything in reverse order. A closer that throws does not stop the
   * others; the first error is thrown at the end, naming its closer.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      let first: Error | undefined;
      for (let c = this.stack.pop(); c; c = this.stack.pop()) {
        try {
          await c.close();
        } catch (e) {
          first ??= new Error(`closing ${c.name} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
      }
      if (first) throw first;
    })();
    return this.closing;
  }

  /** Runs a start-up step; if it throws, closes what was opened so far and rethrows the step's error. */
  async start<T>(step: () => Promise<T> | T): Promise<T> {
    try {
      return await step();
    } catch (e) {
      await this.close().catch(() => undefined);
      throw e;
    }
  }
}
