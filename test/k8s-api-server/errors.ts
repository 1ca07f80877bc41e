// TEST DOUBLE — API errors as the real API server returns them: a `Status` object with the HTTP code,
// a machine reason (NotFound, AlreadyExists, Conflict, Gone, ...) and a one-line message.

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  status(): Record<string, unknown> {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
  }
}

export const notFound = (resource: string, name: string): ApiError =>
  new ApiError(404, 'NotFound', `${resource} "${name}" not found`);
export const alreadyExists = (resource: string, name: string): ApiError =>
  new ApiError(409, 'AlreadyExists', `${resource} "${name}" already exists`);
export const conflict = (resource: string, name: string): ApiError =>
  new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
  );
export const gone = (rv: string): ApiError => new ApiError(410, 'Expired', `too old resource version: ${rv}`);
