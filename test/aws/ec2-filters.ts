import type { Filter, Tag } from '@aws-sdk/client-ec2';
import { ec2Error, invalidParameter, parameterCombination } from './ec2-errors.js';

/**
 * EC2's Filters semantics: filters AND together, the values of one filter OR
 * together, values match case-sensitively with `*` (any run) and `?` (one
 * character) wildcards. `fields(name)` gives an item's values for a filter.
 */
export function matchesFilters(filters: readonly Filter[], fields: (name: string) => readonly string[]): boolean {
  return filters.every((filter) => {
    const match = matcherOf(filter);
    return fields(filter.Name ?? '').some(match);
  });
}

/**
 * One filter's values as a predicate, made once per Filter object (a DescribeVolumes of a
 * 1 000-host fleet tests the same filter against 8 000 volumes) and made again if its values
 * changed: a value without wildcards is compared as a string, one with them as the regular
 * expression it stands for.
 */
const matchers = new WeakMap<Filter, { values: string[]; match: (value: string) => boolean }>();
function matcherOf(filter: Filter): (value: string) => boolean {
  const values = filter.Values ?? [];
  const known = matchers.get(filter);
  if (known && known.values.length === values.length && known.values.every((v, i) => v === values[i])) return known.match;
  const wild = (v: string) => /[*?\\]/.test(v);
  const literals = new Set(values.filter((v) => !wild(v)));
  const patterns = values.filter(wild).map(globToRegExp);
  const match = patterns.length === 0 ? (value: string) => literals.has(value) : (value: string) => literals.has(value) || patterns.some((pattern) => pattern.test(value));
  matchers.set(filter, { values: [...values], match });
  return match;
}

/** Rejects filter names this call does not know, and filters without values, as EC2 does. */
export function checkFilterNames(filters: readonly Filter[], known: ReadonlySet<string>): void {
  for (const filter of filters) {
    const name = filter.Name ?? '';
    if (!known.has(name) && !/^tag:.+/.test(name)) throw invalidParameter(`The filter '${name}' is invalid`);
    if (!filter.Values || filter.Values.length === 0) throw invalidParameter(`The filter '${name}' must have at least one value`);
  }
}

/** Values of the tag filters (`tag:<key>`, `tag-key`, `tag-value`) for a resource's tags. */
export function tagFilterValues(name: string, tags: ReadonlyMap<string, string>): string[] | undefined {
  if (name === 'tag-key') return [...tags.keys()];
  if (name === 'tag-value') return [...tags.values()];
  if (name.startsWith('tag:')) {
    const value = tags.get(name.slice(4));
    return value === undefined ? [] : [value];
  }
  return undefined;
}

function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) source += escapeRegExp(pattern[++i]!);
    else if (c === '*') source += '.*';
    else if (c === '?') source += '.';
    else source += escapeRegExp(c);
  }
  return new RegExp(`^${source}$`, 's');
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export const tagList = (tags: ReadonlyMap<string, string>): Tag[] => [...tags].map(([Key, Value]) => ({ Key, Value }));

/**
 * MaxResults/NextToken paging over items kept in a stable order. The token
 * names the position after the last item returned (not an offset), so items
 * deleted between pages do not make the next page skip any.
 */
export function paginate<T>(
  items: readonly T[],
  position: (item: T) => number,
  page: { maxResults?: number; nextToken?: string; min: number; max: number; idsGiven: boolean; idsParameter: string },
): { items: T[]; nextToken?: string } {
  if (page.maxResults !== undefined) {
    if (page.idsGiven) {
      throw parameterCombination(`The parameter ${page.idsParameter} cannot be used with the parameter maxResults`);
    }
    if (!Number.isInteger(page.maxResults) || page.maxResults < page.min || page.maxResults > page.max) {
      throw invalidParameter(`Value ( ${page.maxResults} ) for parameter maxResults is invalid. Expecting a value between ${page.min} and ${page.max}.`);
    }
  }
  let after = -Infinity;
  if (page.nextToken !== undefined) {
    const decoded = /^p(\d+)$/.exec(Buffer.from(page.nextToken, 'base64url').toString());
    if (!decoded) throw ec2Error('InvalidPaginationToken', `The pagination token '${page.nextToken}' is not valid or is expired.`);
    after = Number(decoded[1]);
  }
  const rest = items.filter((item) => position(item) > after);
  if (page.maxResults === undefined || rest.length <= page.maxResults) return { items: rest };
  const taken = rest.slice(0, page.maxResults);
  return { items: taken, nextToken: Buffer.from(`p${position(taken[taken.length - 1]!)}`).toString('base64url') };
}
