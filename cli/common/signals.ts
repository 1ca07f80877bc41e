// How every long-running `ambit` command ends: on the first SIGINT (Ctrl-C) or SIGTERM (Kubernetes pod
// termination) it runs `stop` once and resolves when that is done, whether it succeeded or not (the
// component logs its own failures). The handlers are removed, so a second signal gets Node's default.
export function untilTerminated(stop: () => Promise<unknown> | undefined = () => undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      Promise.resolve()
        .then(stop)
        .then(
          () => resolve(),
          () => resolve(),
        );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
