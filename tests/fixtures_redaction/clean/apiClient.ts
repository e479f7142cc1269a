import axios, { AxiosInstance } from "axios";
import { getAccessToken, refreshToken } from "./auth";

export interface ClientOptions {
  baseUrl: string;
  token?: string;
  apiKey?: string;
  password: string;
}

const TOKEN_STORAGE_KEY = "clarity.accessToken";
const tokenHeader = "X-Auth-Token";

export function createClient(options: ClientOptions): AxiosInstance {
  const token = options.token ?? localStorage.getItem(TOKEN_STORAGE_KEY);
  const client = axios.create({
    baseURL: options.baseUrl,
    headers: {
      Authorization: `Bearer ${token}`,
      "X-Api-Key": options.apiKey ?? "",
      [tokenHeader]: token,
    },
  });
  client.interceptors.response.use(undefined, async (error) => {
    if (error.response?.status === 401) {
      const accessToken = await refreshToken();
      error.config.headers.Authorization = "Bearer " + accessToken;
      return client.request(error.config);
    }
    throw error;
  });
  return client;
}

export async function login(username: string, password: string): Promise<string> {
  const res = await fetch("https://api.example.com/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const { token } = await res.json();
  return token ?? (await getAccessToken());
}

// risk-assessment-module-2024 and task-runner-v2 are package names, not keys.
export const bearerTokenPattern = /^Bearer\s+(.+)$/;
