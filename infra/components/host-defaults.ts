/** A node host's instance type when neither the cluster spec nor the stack config names one. */
export const DEFAULT_HOST_INSTANCE_TYPE = 't3.medium';
