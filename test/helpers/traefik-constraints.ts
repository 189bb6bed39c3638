/**
 * Traefik's provider constraints, for the forms berth uses: `Label(`key`, `value`)` and
 * `LabelRegex(`key`, `regex`)`. As traefik pkg/provider/constraints/constraints_labels.go
 * evaluates them: `Label` holds when the container has that label with exactly that value,
 * `LabelRegex` when its value matches the (Go) regular expression. Any other expression
 * (operators, other matchers) is an error here, never a pass.
 */
export function traefikConstraintAdmits(expression: string, labels: Readonly<Record<string, string>>): boolean {
  const m = /^\s*(Label|LabelRegex)\(\s*`([^`]*)`\s*,\s*`([^`]*)`\s*\)\s*$/.exec(expression);
  if (!m) throw new Error(`traefik-constraints: expression ${JSON.stringify(expression)} is not modelled`);
  const value = labels[m[2]!];
  if (value === undefined) return false;
  return m[1] === 'Label' ? value === m[3] : new RegExp(m[3]!).test(value);
}
