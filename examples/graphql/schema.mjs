// The GraphQL side of examples/graphql/server.mjs: a schema whose mutations ask the guard.
//
// GitLab's allowlist lets `POST /api/graphql` through the middleware (a path cannot tell a query
// from a mutation), so each mutation checks the namespace it writes to with
// `guard.assertWritable` and turns a refusal into a GraphQL error carrying the guard's `code`.
// Queries never ask: reads pass.

import { buildSchema, GraphQLError } from 'graphql';
import { createHandler } from 'graphql-http/lib/use/express';
import { NamespaceNameError, NamespaceReadOnlyError } from 'namespace-read-only';

const schema = buildSchema(`
  type Issue {
    id: ID!
    project: String!
    title: String!
  }

  type Query {
    issues(project: String!): [Issue!]!
  }

  type Mutation {
    createIssue(project: String!, title: String!): Issue
  }
`);

/**
 * Refuses the mutation when a write to `fullPath` would be refused: `acme/proj` checks the root
 * namespace `acme` and the instance (`*`). `req` lets the check share the request's read of the
 * states with the middleware.
 */
async function assertWritable(guard, fullPath, req) {
  try {
    await guard.assertWritable(fullPath, req);
  } catch (error) {
    if (error instanceof NamespaceReadOnlyError) {
      throw new GraphQLError(error.message, {
        extensions: {
          code: error.code, // ERR_NSRO_MAINTENANCE, ERR_NSRO_STORE_UNAVAILABLE...
          namespace: error.namespace,
          ...(error.reason !== undefined && { reason: error.reason }),
          ...(error.retryAfter !== undefined && { retryAfter: error.retryAfter }),
        },
      });
    }
    // The only other refusal: `fullPath` is no namespace name at all.
    if (error instanceof NamespaceNameError) {
      throw new GraphQLError(`${JSON.stringify(fullPath)} is not a project path`, {
        extensions: { code: 'BAD_USER_INPUT' },
      });
    }
    throw error;
  }
}

/** The `POST /api/graphql` handler (graphql-http), with a store of issues in memory. */
export function graphqlHandler(guard) {
  const issues = [];
  const rootValue = {
    issues: ({ project }) => issues.filter((issue) => issue.project === project),
    createIssue: async ({ project, title }, { req }) => {
      await assertWritable(guard, project, req);
      const issue = { id: String(issues.length + 1), project, title };
      issues.push(issue);
      return issue;
    },
  };
  return createHandler({ schema, rootValue, context: (request) => ({ req: request.raw }) });
}
