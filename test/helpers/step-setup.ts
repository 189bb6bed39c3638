import { beforeEach } from 'vitest';
import { resetSteps, whereInSteps } from './step.js';

// A failed test's first error names the step it was in (test/helpers/step.ts): a timeout says which step hung.
beforeEach(({ onTestFailed }) => {
  resetSteps();
  onTestFailed(({ task }) => {
    const where = whereInSteps();
    const first = task.result?.errors?.[0];
    if (where && first) first.message = `${first.message} [${where}]`;
  });
});
